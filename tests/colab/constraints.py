"""Print the pip constraints of the Colab-pinned test environment (`make test-colab`).

Colab's own widget stack comes from requirements/colab.txt; every other package keeps the
exact version of the `pinned` extra in pyproject.toml, so the two environments differ only
where Colab differs. Usage: python tests/colab/constraints.py > constraints.txt
"""

import pathlib
import re
import sys

import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLAB_TXT = ROOT / "requirements" / "colab.txt"
NOT_IN_COLAB_ENV = {"jupyterlab"}  # the browser test's server; Colab has its own frontend


def _name(requirement: str) -> str:
    """The normalized project name of a requirement line: 'jupyter_client==7.4.*' -> 'jupyter-client'."""
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def colab_pins() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in COLAB_TXT.read_text().splitlines())
    return [line for line in lines if line]


def constraints() -> list[str]:
    colab = colab_pins()
    taken = {_name(r) for r in colab} | NOT_IN_COLAB_ENV
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["pinned"]
    return colab + [r for r in pinned if _name(r) not in taken]


if __name__ == "__main__":
    sys.stdout.write("\n".join(constraints()) + "\n")
