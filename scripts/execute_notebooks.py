"""Execute notebooks top to bottom in a fresh kernel (in their own folder) and save them with outputs.

Usage: python scripts/execute_notebooks.py notebooks/00_start_here.ipynb [...]
"""

import os
import sys
import time

import nbformat
from nbclient import NotebookClient


def main(paths):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    for path in paths:
        start = time.time()
        nb = nbformat.read(path, as_version=4)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
        client.execute()
        nbformat.write(nb, path)
        print(f"{path}: {time.time() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
