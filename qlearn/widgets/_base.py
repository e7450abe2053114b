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

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)
