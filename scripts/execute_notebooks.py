"""Execute notebooks top to bottom in a fresh kernel (in their own folder) and save them with outputs.

Usage: python scripts/execute_notebooks.py notebooks/00_start_here.ipynb [...]
"""

import json
import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient


RUNTIMES = pathlib.Path(__file__).resolve().parents[1] / "qlearn" / "data" / "notebook_runtimes.json"


def main(paths):
    times = json.loads(RUNTIMES.read_text()) if RUNTIMES.exists() else {}
    # 00_start_here prints the others' run times: (re-)run it last whenever another notebook ran.
    start_here = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "00_start_here.ipynb"
    paths = [p for p in paths if pathlib.Path(p).resolve() != start_here]
    if start_here.exists():
        paths.append(str(start_here))
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
        seconds = time.time() - start
        times[pathlib.Path(path).stem] = round(seconds, 1)
        RUNTIMES.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n")
        print(f"{path}: {seconds:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
