"""A small wrapper: a widget box plus the state tests and notebooks read back."""

from __future__ import annotations


class Explorer:
    """Holds the ipywidgets `box`, its `controls` by name, and what the last redraw computed.

    `last` is a dict of the numbers shown; `figure` the last matplotlib Figure drawn.
    Display it like a widget (it displays its box).
    """

    def __init__(self, box, controls: dict, output):
        self.box, self.controls, self.output = box, controls, output
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

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)
