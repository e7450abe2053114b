"""A notebook's check_claims only checks when its result is shown: nbval compares the displayed ✔ lines with the
stored ones, and a claim that fails shows "✘ does not hold" instead. A call whose result is dropped (not the last
expression of its cell, nor passed to display) checks nothing. Every call must be shown, and no stored output may
show a claim that does not hold."""

import ast
import json
import pathlib

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def dropped_claims(source: str) -> list[int]:
    """Line numbers of check_claims calls in a cell's source whose result is neither the cell's last expression nor
    given to display()."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    body = ast.parse(code).body
    shown = set()
    if body and isinstance(body[-1], ast.Expr):
        shown.add(id(body[-1].value))
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "display":
            shown.update(id(arg) for arg in node.args)
    return [node.lineno for node in ast.walk(ast.Module(body=body, type_ignores=[]))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_claims"
            and id(node) not in shown]


def test_the_check_finds_a_dropped_call():
    assert dropped_claims("x = 1\ncheck_claims({'a': True})\ny = 2") == [2]
    assert dropped_claims("claims = check_claims({'a': True})\nz = 3") == [1]
    assert dropped_claims("x = 1\ncheck_claims({'a': True})") == []
    assert dropped_claims("display(check_claims({'a': True}))\nx = 1\n%matplotlib inline") == []


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_claim_is_shown_and_holds(path):
    cells = json.loads(path.read_text())["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code" or "check_claims" not in "".join(cell["source"]):
            continue
        assert not dropped_claims("".join(cell["source"])), \
            f"cell {index}: a check_claims result is dropped, so it checks nothing: make it the cell's last line"
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/plain", "")) + "".join(output.get("text", ""))
            assert "does not hold" not in text, f"cell {index} stores a claim that does not hold: {text[:200]}"
