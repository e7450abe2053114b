"""notebooks/glossary.ipynb: markdown only, one anchored entry per term, and every link to it resolves."""

import json
import pathlib
import re

import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
REQUIRED = ["smallest-normal", "subnormal", "fn-suffix", "vnni", "amx", "avx2-avx512", "fbgemm", "kl-divergence",
            "two-four-sparsity", "ste", "sqnr", "granularity", "zero-point", "ptq-qat", "w8a8", "perplexity", "nf4",
            "outlier-features", "lora", "test-markers"]


@pytest.fixture(scope="module")
def cells():
    return json.loads((NOTEBOOKS / "glossary.ipynb").read_text())["cells"]


def _anchors(cells):
    return [a for c in cells for a in re.findall(r'<a id="([^"]+)"', "".join(c["source"]))]


def test_markdown_only(cells):
    assert cells and all(c["cell_type"] == "markdown" for c in cells)


def test_one_anchored_entry_per_term(cells):
    anchors = _anchors(cells)
    assert len(anchors) == len(set(anchors)) == len(cells) - 1  # the first cell is the index
    assert set(REQUIRED) <= set(anchors)
    for c in cells[1:]:
        text = "".join(c["source"])
        body = text.split("\n\n", 2)[-1]
        assert text.count("### ") == 1 and 0 < len(re.findall(r"[.!?](\s|$)", body)) <= 3, text[:80]


def test_every_glossary_link_resolves(cells):
    anchors = set(_anchors(cells))
    index = "".join(cells[0]["source"])
    assert set(re.findall(r"\]\(#([^)]+)\)", index)) == anchors
    for nb in NOTEBOOKS.glob("*.ipynb"):  # links the lead adds in 00-07: [VNNI](glossary.ipynb#vnni)
        for c in json.loads(nb.read_text())["cells"]:
            for target in re.findall(r"glossary\.ipynb#([\w-]+)", "".join(c["source"])):
                assert target in anchors, f"{nb.name} links to a missing glossary entry #{target}"
