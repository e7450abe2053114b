"""The widgets in a real browser: chromium runs a notebook, a key press moves a slider, and the
readout and the plot image must change with no error anywhere. Two stacks: JupyterLab 4 with this
venv's ipywidgets 8, and (under `make test-colab`) the Colab-pinned venv's ipywidgets 7.7.1 in its
classic Notebook 6.5, the closest offline stand-in for Colab's own widget frontend.

A plain pytest can only check the kernel side of a widget (tests/test_widgets*.py); this test
checks the part a learner sees: that the frontend renders the views, that a key press reaches
the kernel, and that the callback's new HTML and image come back to the page.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
except ImportError:  # the `browser` fixture then skips (or fails under QLEARN_REQUIRE_BROWSER=1)
    PlaywrightTimeoutError = TimeoutError

from .notebook_page import CLASSIC, LAB, REDRAW_MS, NotebookPage

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
COURSE_NOTEBOOK = "02_linear_quantization.ipynb"  # its quantization_explorer on a MiniLM weight
DEMO_SOURCE = [
    "import torch\n\nfrom qlearn.widgets import quantization_explorer\n\n"
    "torch.manual_seed(0)\nx = torch.randn(256, 64)",
    "import ipywidgets\n\nprint(ipywidgets.__version__)",
    "quantization_explorer(x, title='randn(256, 64)')",
]
_BITS = re.compile(r"(\d+)-bit")
# The same parts in ipywidgets 8 (JupyterLab) and 7 (classic notebook) views.
SLIDER_HANDLE = ".widget-slider .noUi-handle, .widget-slider .ui-slider-handle"
OUTPUT_IMAGE = ".widget-output img, .jupyter-widgets-output-area img"


def write_demo_notebook(folder: Path) -> str:
    """A three-cell notebook showing quantization_explorer on a seeded tensor (the server's own python3 kernel)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in DEMO_SOURCE])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    name = "widget_demo.ipynb"
    nbformat.write(nb, folder / name)
    return name


def move_slider_and_check(nb: NotebookPage) -> None:
    """Press an arrow key on the first bits slider; the readout and the plot must follow, without errors."""
    page = nb.page
    explorer = nb.panel.locator(".widget-vbox").filter(has=page.locator(".widget-slider")) \
        .filter(has=page.locator(OUTPUT_IMAGE)).first
    try:
        explorer.wait_for(state="visible", timeout=REDRAW_MS)
    except PlaywrightTimeoutError:
        pytest.fail(f"no widget with a slider and a plot was rendered\n{nb.explain()}")
    handle = explorer.locator(SLIDER_HANDLE).first
    readout = explorer.locator(".widget-html").first
    image = explorer.locator(OUTPUT_IMAGE).first
    before_text, before_src = readout.inner_text(), image.get_attribute("src")
    before_bits = int(_BITS.search(before_text).group(1))
    slider_max = int(float(handle.get_attribute("aria-valuemax") or before_bits))
    key, want_bits = ("ArrowRight", before_bits + 1) if before_bits < slider_max else ("ArrowLeft", before_bits - 1)

    # The Output widget replaces its <img> (clear_output(wait=True), then the new figure), so the
    # predicate looks the elements up afresh each time. The image alone can change twice: wait for
    # the readout, the image AND an idle kernel, so the assertions see the final frame.
    explorer.evaluate("el => el.setAttribute('data-qlearn-test', 'explorer')")
    handle.focus()
    page.keyboard.press(key)
    try:
        page.wait_for_function(
            """([text, src, imageSelector]) => {
                const box = document.querySelector("[data-qlearn-test=explorer]");
                const readout = box.querySelector(".widget-html"), image = box.querySelector(imageSelector);
                return readout && image && readout.innerText !== text && image.getAttribute("src") !== src;
            }""", arg=[before_text, before_src, OUTPUT_IMAGE], timeout=REDRAW_MS)
    except PlaywrightTimeoutError:
        pytest.fail(f"{key} on the bits slider did not redraw the readout and the plot within {REDRAW_MS} ms "
                    f"(readout still {readout.inner_text()!r})\n{nb.explain()}")
    nb.wait_idle(REDRAW_MS)

    after_text, after_src = readout.inner_text(), image.get_attribute("src")
    assert f"{want_bits}-bit" in after_text, (f"{key}: readout says {after_text!r}, wanted {want_bits} bits\n"
                                              f"{nb.explain()}")
    assert after_src and after_src.startswith("data:image/png") and after_src != before_src, nb.explain()
    assert nb.errors() == [], nb.explain()
    assert nb.widget_failures() == [], nb.explain()


def run_notebook(page, server, name: str, frontend) -> NotebookPage:
    nb = NotebookPage(page, server, name, frontend)
    nb.open()
    verdict = nb.run_all()
    assert nb.errors() == [], nb.explain()
    assert verdict == "true", f"Run All Cells ended with {verdict!r}\n{nb.explain()}"
    assert nb.widget_failures() == [], nb.explain()
    return nb


def copy_course_notebook(folder: Path, name: str) -> str:
    """A course notebook, outputs cleared (stale widget views would only say 'model not found')."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, folder / name)
    return name


CASES = [
    pytest.param("lab", LAB, None, COURSE_NOTEBOOK, id="jupyterlab-local-nb02"),
    pytest.param("classic_colab", CLASSIC, "7.7.", None, id="colab-ipywidgets-7.7-demo"),
]


@pytest.mark.parametrize("server_fixture,frontend,widgets_version,notebook", CASES)
def test_widget_reacts_to_keyboard(page, request, server_fixture, frontend, widgets_version, notebook, tmp_path):
    server = request.getfixturevalue(server_fixture)
    if notebook is None:
        name = write_demo_notebook(server.root_dir)
    else:
        name = copy_course_notebook(server.root_dir, notebook)
    nb = run_notebook(page, server, name, frontend)
    if widgets_version:
        version = nb.stdout(1).strip()  # the demo prints ipywidgets.__version__
        assert version.startswith(widgets_version), f"the kernel runs ipywidgets {version}, not {widgets_version}x"
    try:
        move_slider_and_check(nb)
    finally:
        page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
