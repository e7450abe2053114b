"""Stamp every notebook with its title + "Open in Colab" badge cell and the Colab setup cell.

The repository URL lives in one place, `[project.urls] Repository` in pyproject.toml; this
script writes it into the two first cells of each notebook (tagged `qlearn-colab-badge` and
`qlearn-colab-setup`), replacing earlier stamps, so the cells never drift apart.

Usage: python scripts/stamp_colab.py notebooks/*.ipynb        (then re-execute the notebooks)
       python scripts/stamp_colab.py --check notebooks/*.ipynb (exit 1 if any stamp is stale)
"""

import pathlib
import sys
import tomllib

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
BADGE_TAG, SETUP_TAG = "qlearn-colab-badge", "qlearn-colab-setup"


def repository_url() -> str:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return meta["project"]["urls"]["Repository"].rstrip("/")


def badge_source(nb_path: pathlib.Path, title: str, url: str) -> str:
    repo = url.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{nb_path.name}"
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"# {title}\n\n[![Open In Colab]({badge})]({colab})"


def setup_source(url: str) -> str:
    return (
        "# NBVAL_SKIP\n"
        "# Colab only: install qlearn and its data (Colab's own torch is kept). Does nothing elsewhere.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install --quiet "qlearn @ git+{url}"'
    )


def _title(nb, nb_path) -> str:
    """The notebook's title: from an earlier badge cell, else its first markdown heading, else its name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            return cell.source.lstrip()[2:].splitlines()[0].strip()
    return nb_path.stem.replace("_", " ")


def stamp(nb_path: pathlib.Path, url: str) -> bool:
    """Rewrite the two stamped cells of one notebook; return True if anything changed."""
    nb = nbformat.read(nb_path, as_version=4)
    title = _title(nb, nb_path)
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and BADGE_TAG not in first.metadata.get("tags", []) \
            and first.source.lstrip().startswith("# "):
        # The notebook's own title cell becomes the badge cell; keep any text under the heading.
        text = first.source.strip()
        rest = text.split("\n", 1)[1].strip() if "\n" in text else ""
        nb.cells.pop(0)
        if rest:
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(rest))
    body = [c for c in nb.cells if not set(c.metadata.get("tags", [])) & {BADGE_TAG, SETUP_TAG}]
    badge = nbformat.v4.new_markdown_cell(badge_source(nb_path, title, url), metadata={"tags": [BADGE_TAG]})
    setup = nbformat.v4.new_code_cell(setup_source(url), metadata={"tags": [SETUP_TAG]})
    badge.id, setup.id = BADGE_TAG, SETUP_TAG
    first = nb.cells[:2]
    if [c.source for c in first] == [badge.source, setup.source] and [c.get("id") for c in first] == [badge.id, setup.id]:
        return False
    nb.cells = [badge, setup] + body
    nbformat.write(nb, nb_path)
    return True


def main(argv) -> int:
    check = "--check" in argv
    paths = [pathlib.Path(a) for a in argv if a != "--check"]
    url = repository_url()
    stale = []
    for path in paths:
        if check:
            nb = nbformat.read(path, as_version=4)
            cells = nb.cells[:2]
            ok = (len(cells) == 2 and BADGE_TAG in cells[0].metadata.get("tags", [])
                  and cells[0].source == badge_source(path, _title(nb, path), url)
                  and cells[1].source == setup_source(url))
            if not ok:
                stale.append(str(path))
        elif stamp(path, url):
            stale.append(str(path))
    if check and stale:
        sys.stderr.write("stale Colab stamps (run scripts/stamp_colab.py): " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
