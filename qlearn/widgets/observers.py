"""The observer explorer: pick bits and an observer, see the range it picks and the error."""

from __future__ import annotations

import ipywidgets as w
import torch

from ..core.validation import check_float_tensor
from ..plots.qat import observer_ranges, observer_ranges_plot
from ..training.observers import OBSERVERS
from ._base import Explorer

__all__ = ["observer_explorer"]


def observer_explorer(x: torch.Tensor, bits: int = 4, observer: str = "minmax", title: str = "tensor",
                      batch_size: int | None = 512) -> Explorer:
    """A bits slider (2-8) and an observer dropdown that redraw `observer_ranges_plot` for `x`.

    The observers see x as calibration batches, x.split(batch_size) along dim 0 (512: notebook 06's
    8 batches of its 4,096 values), so the moving average lands between min-max and the percentile;
    None shows x as one batch.
    """
    check_float_tensor(x)
    if observer not in OBSERVERS:
        raise ValueError(f"observer must be one of {sorted(OBSERVERS)}, got {observer!r}")
    bits_w = w.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False)
    obs_w = w.Dropdown(options=list(OBSERVERS), value=observer, description="observer")
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([w.HBox([bits_w, obs_w]), readout, out]), {"bits": bits_w, "observer": obs_w}, out,
                        title="observer explorer")
    n_batches = 1 if batch_size is None else len(x.split(batch_size)) if isinstance(batch_size, int) else 0

    def redraw(*_):
        b, name = int(bits_w.value), obs_w.value
        ranges = observer_ranges(x, b, False, (name,), batch_size)
        r = ranges[name]
        explorer.last = dict(r, bits=b, observer=name)
        seen = "one batch" if n_batches == 1 else f"{n_batches} batches of {batch_size}"
        readout.value = (f"<b>{name}, {b} bits</b> (x seen as {seen}): range [{r['lo']:.3g}, {r['hi']:.3g}], "
                         f"MSE {r['mse']:.3g}")
        explorer.show(observer_ranges_plot(x, b, False, (name,), title=title, ranges=ranges))
        explorer.calls += 1

    bits_w.observe(redraw, names="value")
    obs_w.observe(redraw, names="value")
    redraw()
    return explorer
