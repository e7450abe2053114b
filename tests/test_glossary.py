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


ISSUE_22_TERMS = ["notation", "hessian", "cholesky", "optimal-brain-surgeon", "half-quadratic", "lp-shrinkage",
                  "llm-qat", "residual-stream", "ffn", "gelu", "pre-post-ln", "rmsnorm", "silu", "attention-sinks"]


def _links_by_notebook():
    """{notebook name: set of glossary anchors its markdown links to}."""
    return {nb.name: {t for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown"
                      for t in re.findall(r"glossary\.ipynb#([\w-]+)", "".join(c["source"]))}
            for nb in NOTEBOOKS.glob("*.ipynb") if nb.name != "glossary.ipynb"}


def test_the_jargon_of_08_to_10_and_the_notation_have_entries(cells):
    assert set(ISSUE_22_TERMS) <= set(_anchors(cells))


def test_every_glossary_entry_is_linked_from_a_notebook(cells):
    linked = set().union(*_links_by_notebook().values())
    unlinked = sorted(set(_anchors(cells)) - linked)
    assert not unlinked, f"glossary entries no notebook links to: {unlinked}"


def test_the_jargon_of_08_to_10_is_linked_where_it_is_used():
    links = _links_by_notebook()
    wanted = {"08_weight_methods.ipynb": {"nf4", "gptq-awq-hqq", "hessian", "cholesky", "optimal-brain-surgeon",
                                          "half-quadratic", "lp-shrinkage", "llm-qat", "perplexity", "notation"},
              "09_activation_outliers.ipynb": {"residual-stream", "ffn", "gelu", "pre-post-ln", "rmsnorm", "silu",
                                               "attention-sinks", "outlier-features", "llm-int8-smoothquant"},
              "10_qlora.ipynb": {"lora", "nf4", "perplexity"}}
    for name, anchors in wanted.items():
        assert anchors <= links[name], f"{name} does not link {sorted(anchors - links[name])}"


def _markdown(name):
    return "".join("".join(c["source"]) for c in json.loads((NOTEBOOKS / name).read_text())["cells"]
                   if c["cell_type"] == "markdown")


def test_every_notebook_links_the_next():
    course = sorted(nb.name for nb in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for name, following in zip(course, course[1:]):
        assert f"]({following})" in _markdown(name), f"{name} has no link to {following}"
    assert "](00_start_here.ipynb)" in _markdown(course[-1]), f"{course[-1]} should lead back to the start"
    assert "](00_start_here.ipynb)" in _markdown("glossary.ipynb")
