"""A notebook whose kernel dies or hangs fails fast under `pytest --nbval`, naming the notebook and the cell."""

import json
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _notebook(cells):
    return {"cells": [{"cell_type": "code", "execution_count": i + 1, "id": f"c{i}", "metadata": {},
                       "outputs": [], "source": src} for i, src in enumerate(cells)],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _run_nbval(tmp_path, cells, timeout_s):
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "guard_me.ipynb").write_text(json.dumps(_notebook(cells)))
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
                          f"--nbval-cell-timeout={timeout_s}", "-q", "guard_me.ipynb"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    return run, time.monotonic() - start


@pytest.mark.parametrize("kill", ["import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
                                  "import ctypes; ctypes.string_at(0)"], ids=["sigkill", "segfault"])
def test_dead_kernel_fails_at_once_and_names_the_cell(tmp_path, kill):
    run, seconds = _run_nbval(tmp_path, ["x = 1", kill, "print(x)"], timeout_s=600)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "guard_me.ipynb::Cell 1" in out and "the kernel died while running this cell" in out, out
    assert "1 passed" in out and "2 failed" in out, out
    assert seconds < 90, f"took {seconds:.0f} s: it waited on the dead kernel"


def test_hanging_cell_fails_after_the_cell_timeout(tmp_path):
    run, seconds = _run_nbval(tmp_path, ["import time; time.sleep(120)", "print(1)"], timeout_s=3)
    out = run.stdout + run.stderr
    assert run.returncode == 1 and "guard_me.ipynb::Cell 0" in out and "Timeout" in out, out
    assert seconds < 90, f"took {seconds:.0f} s"
