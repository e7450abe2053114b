"""Fixtures for the real-browser test: Debian's chromium driven by Playwright, and a throwaway JupyterLab.

The test is skipped when chromium or Playwright is missing, unless QLEARN_REQUIRE_BROWSER=1
(set by `make test` / `make test-browser`, which install chromium first): then it fails.
QLEARN_COLAB_PYTHON=<python of the Colab-pinned venv> adds a run on Colab's widget stack: that
venv's classic Notebook 6.5 with the ipywidgets 7.7.1 frontend and kernel (JupyterLab 4's widget
manager renders only ipywidgets 8 kernels: "Module @jupyter-widgets/controls, version ^1.5.0 is
not registered").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .lab import ClassicServer, LabServer

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("QLEARN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
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


def _server_env() -> dict:
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """JupyterLab (this venv) on 127.0.0.1 serving an empty temp folder; stopped, kernels and all, afterwards."""
    root, home = tmp_path_factory.mktemp("lab-root"), tmp_path_factory.mktemp("lab-home")
    with LabServer(root, home, env=_server_env()) as server:
        yield server


@pytest.fixture(scope="session")
def classic_colab(tmp_path_factory, colab_python):
    """The Colab-pinned venv's classic Notebook server (ipywidgets 7.7.1 frontend and kernel)."""
    if not colab_python:
        pytest.skip("no Colab-pinned venv (`make test-colab` sets QLEARN_COLAB_PYTHON)")
    root, home = tmp_path_factory.mktemp("classic-root"), tmp_path_factory.mktemp("classic-home")
    with ClassicServer(root, home, colab_python, env=_server_env()) as server:
        yield server


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()
