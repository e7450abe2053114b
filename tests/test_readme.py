"""The README's package example runs as written: every name it uses is defined in it."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README has no python example"
    for code in blocks:
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)  # a NameError here means an undefined name
    assert float(namespace["qlearn"].core.metrics.sqnr_db(namespace["W"], namespace["W_hat"])) > 15


def test_readme_says_what_make_test_needs_and_how_to_skip_the_browser():
    text = (ROOT / "README.md").read_text()
    assert "Debian or Ubuntu" in text and "sudo" in text
    assert "make test-no-browser" in text
    assert "\ntest-no-browser:" in (ROOT / "Makefile").read_text()
