"""What the stored notebook outputs may contain, and how much memory each notebook needs.

1. No stored output carries an absolute machine path (a home folder, a virtualenv's site-packages, C:\\...) and no
   output is a stderr stream: a student sees red text and somebody's folders. A notebook that teaches with a
   stderr stream says so in the cell and is listed in ALLOWED_STDERR.
2. Each notebook's peak resident memory, measured by scripts/execute_notebooks.py (a fresh kernel, top to bottom)
   and stored in qlearn/data/notebook_runtimes.json, stays within LIMIT_MIB: the course must run on an 8 GB laptop
   with a browser open.

PENDING holds the notebooks whose re-execution is pending (empty since 05 and 07-10 were re-executed for issue 22);
test_pending_is_still_pending fails as soon as a pending notebook is clean, so that it is not forgotten there.
"""

import json
import os
import pathlib
import re

import pytest

from qlearn.teaching import course

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
PENDING: set[str] = set()
LIMIT_MIB = 3 * 1024
# Over the limit, found by the measurement of issue 22; must be fixed in the notebook (strict: the test turns red
# when the notebook is fixed and the mark is left behind).
OVER_LIMIT: dict[str, str] = {}  # 05 peaked at 6.5 GiB before its SmolLM2 copies were built and freed one at a time
# (notebook stem, text in the cell's source) -> why the notebook shows this stderr stream; the cell must say so too.
ALLOWED_STDERR: dict[tuple[str, str], str] = {}
MACHINE_PATH = re.compile(r"/home/|/root/|/Users/|/work/|/tmp/|/private/var/|site-packages|dist-packages"
                          r"|\b[A-Za-z]:\\\\")


def _stems():
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def _texts(output):
    """Every text a stored output shows: stream text, text/* and JSON data, an error's traceback."""
    if output["output_type"] == "stream":
        yield "".join(output["text"])
    elif output["output_type"] == "error":
        yield "\n".join(output.get("traceback", []))
    else:
        for mime, data in output.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                yield data if isinstance(data, str) else json.dumps(data)


def problems(stem: str) -> list[str]:
    """What is wrong with the stored outputs of notebook `stem`: one line per offending output."""
    found = []
    cells = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())["cells"]
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        for output in cell.get("outputs", []):
            if output.get("name") == "stderr" and not any(
                    s == stem and text in source for s, text in ALLOWED_STDERR):
                found.append(f"cell {index}: stderr {''.join(output['text'])[:100]!r}")
            for text in _texts(output):
                if (match := MACHINE_PATH.search(text)):
                    near = text[max(0, match.start() - 40):match.end() + 40]
                    found.append(f"cell {index}: machine path near {near!r}")
    return found


@pytest.mark.parametrize("stem", _stems())
def test_no_stderr_and_no_machine_path_in_stored_outputs(stem):
    if stem in PENDING:
        pytest.skip("notebook 08-10 re-execution pending (issue 22): empty PENDING after re-executing them")
    assert not problems(stem), "\n".join(problems(stem))


def test_allowed_stderr_cells_say_why():
    for (stem, text), why in ALLOWED_STDERR.items():
        cells = [c for c in json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())["cells"]
                 if text in "".join(c["source"])]
        assert len(cells) == 1 and why, f"{stem}: ALLOWED_STDERR names no single cell with {text!r}, or no reason"
        assert "stderr" in "".join(cells[0]["source"]).lower(), f"{stem}: the cell with {text!r} must say why"


def test_the_check_finds_what_it_looks_for():
    fake = {"output_type": "stream", "name": "stdout",
            "text": ["Failed to load /home/me/.venv/lib/python3.11/site-packages/torchao/_C.so\n"]}
    assert any(MACHINE_PATH.search(t) for t in _texts(fake))
    assert MACHINE_PATH.search("C:\\\\Users\\\\me") and not MACHINE_PATH.search("accuracy 0.93 / 1.00")


def test_pending_is_still_pending():
    """A notebook leaves PENDING once it is re-executed: clean outputs and a stored peak."""
    peaks = course.peak_memory_mib()
    done = [stem for stem in PENDING if not problems(stem) and stem in peaks]
    assert not done, f"{done} re-executed: remove them from PENDING"


@pytest.mark.parametrize("stem", [s for s in _stems()])
def test_peak_memory_is_stored_and_within_the_limit(stem):
    if stem in PENDING:
        pytest.skip("notebook 08-10 re-execution pending (issue 22): measure with scripts/execute_notebooks.py")
    if stem in OVER_LIMIT:
        pytest.xfail(f"{stem} {OVER_LIMIT[stem]}")
    peaks = course.peak_memory_mib()
    assert stem in peaks, f"no stored peak for {stem}: run scripts/execute_notebooks.py notebooks/{stem}.ipynb"
    assert peaks[stem] <= LIMIT_MIB, f"{stem} peaked at {peaks[stem]} MiB > {LIMIT_MIB} MiB"


@pytest.mark.parametrize("stem", sorted(OVER_LIMIT))
def test_over_limit_notebooks_are_still_over(stem):
    """Strict: once a notebook listed in OVER_LIMIT fits, this fails until it leaves OVER_LIMIT."""
    assert course.peak_memory_mib().get(stem, 0) > LIMIT_MIB, f"{stem} fits now: remove it from OVER_LIMIT"


def test_execute_script_reads_the_old_format_and_writes_the_new(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebooks", NOTEBOOKS.parent / "scripts" /
                                                  "execute_notebooks.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "RUNTIMES", tmp_path / "notebook_runtimes.json")
    script.RUNTIMES.write_text('{"01_x": 11.6, "02_y": {"seconds": 2.0, "peak_mib": 400}}')
    records = script.read_records()
    assert records == {"01_x": {"seconds": 11.6}, "02_y": {"seconds": 2.0, "peak_mib": 400}}
    records["01_x"]["peak_mib"] = 812
    script.write_records(records)
    assert json.loads(script.RUNTIMES.read_text()) == {"01_x": {"seconds": 11.6, "peak_mib": 812},
                                                        "02_y": {"seconds": 2.0, "peak_mib": 400}}
    assert script.peak_mib(1 << 30) is None  # no such process: no number, no crash
    assert script.peak_mib(os.getpid()) > 10  # this process's own VmHWM, in MiB
