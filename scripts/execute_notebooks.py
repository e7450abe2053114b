"""Execute notebooks top to bottom in a fresh kernel (in their own folder) and save them with outputs.

For each notebook it records, in qlearn/data/notebook_runtimes.json, the run time and the peak resident memory of
the kernel process (VmHWM: the most memory the kernel ever held, read from /proc after every cell):

    {"01_dtypes_and_casting": {"seconds": 11.6, "peak_mib": 812}, ...}

Usage:
    python scripts/execute_notebooks.py notebooks/01_dtypes_and_casting.ipynb [...]
    python scripts/execute_notebooks.py --out /tmp/executed notebooks/0[1-7]*.ipynb   # measure, keep the notebooks
    python scripts/execute_notebooks.py --peaks-only --out /tmp/executed ...          # store the peaks, keep the times

--out DIR writes the executed notebooks to DIR instead of over the originals (the kernel still runs in the
notebook's own folder). --peaks-only keeps the stored run times (a run on a busy machine times badly but measures
memory well). Notebook 00 prints the others' numbers, so it runs last whenever it is given or another notebook ran.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNTIMES = ROOT / "qlearn" / "data" / "notebook_runtimes.json"
START_HERE = ROOT / "notebooks" / "00_start_here.ipynb"


def peak_mib(pid: int) -> float | None:
    """The peak resident memory (VmHWM) of process `pid` in MiB, or None where /proc does not report it."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    return None


def read_records() -> dict[str, dict]:
    """The stored records, each {"seconds": ..., "peak_mib": ...}; the old format (stem -> seconds) is read too."""
    stored = json.loads(RUNTIMES.read_text()) if RUNTIMES.exists() else {}
    return {stem: dict(value) if isinstance(value, dict) else {"seconds": value} for stem, value in stored.items()}


def write_records(records: dict[str, dict]) -> None:
    """One line per notebook, sorted: {"01_...": {"seconds": 11.6, "peak_mib": 812}, ...}."""
    lines = [f" {json.dumps(stem)}: {json.dumps(records[stem])}" for stem in sorted(records)]
    RUNTIMES.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def execute(path: pathlib.Path, out_dir: pathlib.Path | None) -> tuple[float, float | None]:
    """Run one notebook in a fresh kernel; return (seconds, peak MiB of the kernel process or None)."""
    start = time.time()
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    peak = [None]

    def read_peak(**_):  # VmHWM only grows: its last reading is the kernel's peak
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid is not None:
            peak[0] = peak_mib(pid) or peak[0]

    client.on_notebook_start = client.on_cell_executed = read_peak  # at start too: a notebook may have no code
    client.execute()
    target = path if out_dir is None else out_dir / path.name
    nbformat.write(nb, target)
    return time.time() - start, peak[0]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, help="write the executed notebooks here, not over the originals")
    parser.add_argument("--peaks-only", action="store_true", help="store the peak memory, keep the stored run times")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks if p.resolve() != START_HERE]
    if START_HERE.exists() and (paths or START_HERE in [p.resolve() for p in args.notebooks]):
        paths.append(START_HERE)  # 00 prints the others' numbers: it runs last
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    records = read_records()
    for path in paths:
        seconds, peak = execute(path, args.out)
        record = records.setdefault(path.stem, {})
        if not (args.peaks_only and "seconds" in record):
            record["seconds"] = round(seconds, 1)
        if peak is not None:
            record["peak_mib"] = round(peak)
        write_records(records)
        print(f"{path.name}: {seconds:.1f} s, peak {'-' if peak is None else f'{peak:.0f} MiB'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
