"""The group explorer of notebook 05: a bits slider and a group-size dropdown that redraw one weight row."""

from __future__ import annotations

import ipywidgets as w
import torch

from ..core.validation import check_bits, check_float_tensor
from ..plots.inference import plot_group_reconstruction
from ._base import Explorer

__all__ = ["group_explorer"]


def group_explorer(W: torch.Tensor, bits: int = 4, group_size: int = 64, group_sizes=(32, 64, 128, 384)) -> Explorer:
    """A widget around `qlearn.plots.plot_group_reconstruction(W, bits, group_size)`: each group's grid of levels.

    Shapes: W (out, in); every size in `group_sizes` must divide `in`.
    """
    check_float_tensor(W, "W")
    check_bits(bits)
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D weight (out, in), got shape {tuple(W.shape)}")
    sizes = list(group_sizes)
    bad = [g for g in sizes if isinstance(g, bool) or not isinstance(g, int) or g < 1 or W.shape[1] % g]
    if not sizes or bad:
        raise ValueError(f"group_sizes must be positive ints that divide W's {W.shape[1]} inputs, got {bad or sizes}")
    if group_size not in sizes:
        raise ValueError(f"group_size must be one of {sizes}, got {group_size!r}")
    bits_w = w.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False)
    group_w = w.Dropdown(options=sizes, value=group_size, description="group size")
    out = w.Output()
    explorer = Explorer(w.VBox([w.HBox([bits_w, group_w]), out]), {"bits": bits_w, "group_size": group_w}, out,
                        title="group explorer")

    def redraw(*_):
        b, g = int(bits_w.value), int(group_w.value)
        explorer.last = {"bits": b, "group_size": g}
        explorer.show(plot_group_reconstruction(W, bits=b, group_size=g))
        explorer.calls += 1

    bits_w.observe(redraw, names="value")
    group_w.observe(redraw, names="value")
    redraw()
    return explorer
