"""A small wrapper: a widget box plus the state tests and notebooks read back, displayed with a static fallback."""

from __future__ import annotations

import base64
import io
import sys

__all__ = ["FALLBACK_TEXT", "Explorer", "widget_bundle"]

FALLBACK_TEXT = "[interactive widget: {title}. Run this cell in Jupyter or Colab to use it.]"


def widget_bundle(box, title: str, figure=None, html: str | None = None) -> dict:
    """The display data of an ipywidgets `box` with a static fallback for viewers that cannot run widgets.

    Live frontends (JupyterLab, Notebook, Colab) render the widget view, the first choice in the bundle.
    GitHub and nbviewer cannot: they show the image (`figure`, a matplotlib Figure, as PNG), or the
    HTML, or the one-line text/plain message instead of `VBox(children=(HBox(...`.
    Works with the view spec of ipywidgets 7.7 and 8.
    """
    bundle = {"application/vnd.jupyter.widget-view+json": box.get_view_spec(),
              "text/plain": FALLBACK_TEXT.format(title=title)}
    # Widget only where the committed notebooks never come from: Colab, and ipywidgets 7 (Colab's version),
    # whose classic-Notebook frontend shows the picture instead of the widget when both are offered.
    if "google.colab" in sys.modules or _ipywidgets_major() < 8:
        return bundle
    if figure is not None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        bundle["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    elif html is not None:
        bundle["text/html"] = html
    return bundle


def _ipywidgets_major() -> int:
    import ipywidgets

    return int(ipywidgets.__version__.split(".")[0])


class Explorer:
    """Holds the ipywidgets `box`, its `controls` by name, and what the last redraw computed.

    `last` is a dict of the numbers shown; `figure` the last matplotlib Figure drawn.
    Display it like a widget: a live notebook shows the widget, a saved one (GitHub, nbviewer)
    shows the figure of the settings it was displayed with and a "run the cell" line.
    """

    def __init__(self, box, controls: dict, output, title: str = "explorer"):
        self.box, self.controls, self.output, self.title = box, controls, output, title
        self.last: dict = {}
        self.figure = None
        self.calls = 0

    def show(self, fig) -> None:
        """Replace the picture in the Output widget with `fig`, and remember it as `figure`.

        The outputs are set directly rather than captured with `with output:` and `clear_output`:
        the capture context was seen to stall notebook execution (nbclient) for minutes.
        """
        import matplotlib.pyplot as plt

        self.output.outputs = ()
        self.output.append_display_data(fig)
        self.figure = fig
        plt.close(fig)

    def static_html(self) -> str | None:
        """HTML that shows this explorer's current state without a kernel (for explorers without a figure)."""
        return None

    def _repr_mimebundle_(self, include=None, exclude=None):
        return widget_bundle(self.box, self.title, self.figure, None if self.figure is not None else self.static_html())

    def __repr__(self) -> str:
        return FALLBACK_TEXT.format(title=self.title)
