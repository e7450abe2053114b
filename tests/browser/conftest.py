"""Fixtures for the real-browser test: Debian's chromium driven by Playwright, and a throwaway JupyterLab.

The test is skipped when chromium or Playwright is missing, unless QLEARN_REQUIRE_BROWSER=1
(set by `make test` / `make test-browser`, which install chromium first): then it fails.
QLEARN_COLAB_PYTHON=<python of the Colab-pinned venv> adds a kernel running Colab's widget stack.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .lab import LabServer, add_kernelspec

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("QLEARN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
COLAB_KERNEL = "qlearn-colab"
PAGE_TIMEOUT_MS = 30_000


def _unavailable(reason: str):
    if os.environ.get("QLEARN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (QLEARN_REQUIRE_BROWSER=1; `make chromium` installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A headless chromium with a fresh profile; closed (and its driver stopped) after the session."""
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, timeout=PAGE_TIMEOUT_MS, viewport={"width": 1280, "height": 1600})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="session")
def colab_python():
    """The Colab-pinned venv's python if QLEARN_COLAB_PYTHON names one, else None."""
    python = os.environ.get("QLEARN_COLAB_PYTHON")
    if python and not os.access(python, os.X_OK):
        pytest.fail(f"QLEARN_COLAB_PYTHON={python} is not an executable python")
    return python


@pytest.fixture(scope="session")
def lab(tmp_path_factory, colab_python):
    """A JupyterLab server on 127.0.0.1 serving an empty temp folder; stopped, kernels and all, afterwards."""
    root, home = tmp_path_factory.mktemp("lab-root"), tmp_path_factory.mktemp("lab-home")
    if colab_python:
        add_kernelspec(home, COLAB_KERNEL, colab_python, "Python 3 (Colab pins)")
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    with LabServer(root, home, env={"PYTHONPATH": pythonpath}) as server:
        yield server


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()
