"""Will the course work in Colab? Its widget stack is allowed by our dependency ranges, the data
the notebooks read ships inside the wheel, and no notebook reads files from the repository checkout.

`make test-colab` runs this file inside the Colab-pinned venv too (QLEARN_COLAB_ENV=1), where it
also checks that the venv really holds Colab's versions.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

from .constraints import ROOT, _name, colab_pins, constraints

DEPENDENCIES = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
# The numbered notebooks; the glossary is a page of Markdown with nothing to install or run.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IN_COLAB_ENV = os.environ.get("QLEARN_COLAB_ENV") == "1"


def _pins() -> list[tuple[str, str]]:
    """(name, lowest version the pin allows) per Colab pin: 'numpy==2.1.*' -> ('numpy', '2.1.0')."""
    pins = []
    for line in colab_pins():
        req = Requirement(line)
        (spec,) = req.specifier  # one exact or wildcard pin per line
        pins.append((_name(line), spec.version.replace(".*", ".0")))
    return pins


@pytest.mark.parametrize("name,version", _pins(), ids=[n for n, _ in _pins()])
def test_dependency_ranges_keep_colabs_version(name, version):
    """`pip install qlearn` in Colab must not replace Colab's own package (torch, ipywidgets, numpy, ...)."""
    for req in DEPENDENCIES:
        if _name(req.name) == name:
            assert req.specifier.contains(Version(version), prereleases=True), \
                f"pyproject dependency {req} would replace Colab's {name} {version}"


def test_constraints_keep_every_pinned_package_once():
    names = [_name(r) for r in constraints()]
    assert len(names) == len(set(names)), names
    assert "torch" in names and "ipywidgets" in names and "jupyterlab" not in names


@pytest.mark.skipif(not IN_COLAB_ENV, reason="only inside the Colab-pinned venv (make test-colab)")
@pytest.mark.parametrize("line", colab_pins(), ids=[_name(p) for p in colab_pins()])
def test_colab_venv_holds_colabs_versions(line):
    req = Requirement(line)
    installed = importlib.metadata.version(req.name)
    assert req.specifier.contains(Version(installed).base_version), f"{req.name} {installed} is not {req}"


def _build_wheel(src: Path, out: Path) -> Path:
    """Build qlearn's wheel from `src` with setuptools (no network: the build backend is already installed)."""
    code = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def test_wheel_ships_the_package_data(tmp_path):
    """Every file under qlearn/data (also in sub-folders) is inside the built wheel, where
    importlib.resources finds it in Colab. A probe file and a nested one check the rule itself."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "qlearn", src / "qlearn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", src / "pyproject.toml")
    readme = ROOT / "README.md"
    (src / "README.md").write_text(readme.read_text() if readme.exists() else "qlearn\n")
    probes = ["qlearn/data/probe.txt", "qlearn/data/nested/probe.json"]
    for probe in probes:
        (src / probe).parent.mkdir(parents=True, exist_ok=True)
        (src / probe).write_text("probe\n")
    wheel = _build_wheel(src, tmp_path / "dist")
    data_files = [p.relative_to(src).as_posix() for p in (src / "qlearn" / "data").rglob("*") if p.is_file()]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert set(probes) <= set(data_files)
    missing = sorted(set(data_files) - names)
    assert not missing, f"package data missing from the wheel (fix [tool.setuptools.package-data]): {missing}"
    modules = {p.relative_to(src).as_posix() for p in (src / "qlearn").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


# A string literal naming the repository's data folder: "data/x.csv", "../data", '../data/x'.
_DATA_PATH = re.compile(r"""["'](\.\./)*data(/[^"']*)?["']""")


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_reads_no_repository_files(path):
    """A Colab kernel has no checkout: data must come from the package (importlib.resources)."""
    nb = nbformat.read(path, as_version=4)
    hits = [(i, m.group(0)) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for m in _DATA_PATH.finditer(cell.source)]
    assert not hits, f"{path.name} reads repository paths {hits}; ship the file in qlearn/data and load it with " \
                     "importlib.resources.files('qlearn') / 'data' / NAME"
