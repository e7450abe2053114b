"""Four heatmaps of one small tensor: the original, its integer codes, the reconstruction, and the absolute error."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core.primitives import QParams, dequantize, quantize
from ..core.validation import check_float_tensor

__all__ = ["ANNOTATE_SIDE", "MAX_SIDE", "quantization_heatmaps"]

MAX_SIDE = 32     # larger tensors are unreadable as heatmaps
ANNOTATE_SIDE = 8  # write the number in each cell up to this size


def quantization_heatmaps(x: torch.Tensor, qparams: QParams, title: str | None = None):
    """Heatmaps of x, q = quantize(x), x_hat = dequantize(q) and |x - x_hat|, each cell annotated when small.

    Two rows of two panels, so that at a notebook's width every annotated number stays readable
    (for up to 8 x 8 cells; a tensor of 4 x 6 reads best).
    Shapes: x (rows, cols) with rows, cols <= 32 -> a Figure with 4 Axes (plus colorbars).
    """
    check_float_tensor(x)
    if not isinstance(qparams, QParams):
        raise TypeError(f"qparams must be a QParams (from choose_qparams), got {type(qparams).__name__}")
    if x.ndim != 2 or max(x.shape) > MAX_SIDE:
        raise ValueError(f"x must be a small 2-D tensor (at most {MAX_SIDE} x {MAX_SIDE}), got shape {tuple(x.shape)}")
    q = quantize(x, qparams)
    x_hat = dequantize(q, qparams)
    panels = [("original x", x, "{:.2f}", "RdBu_r"),
              (f"codes q ({qparams.bits}-bit)", q, "{:d}", "RdBu_r"),
              ("reconstruction x_hat", x_hat, "{:.2f}", "RdBu_r"),
              ("|x - x_hat|", (x - x_hat).abs(), "{:.3f}", "Reds")]
    rows, cols = x.shape
    cell = min(0.6, 4.0 / cols)  # inches per cell: two panels side by side fit a 10-inch notebook figure
    fig, axes = plt.subplots(2, 2, figsize=(10, 2 * rows * cell + 1.6))
    font = 11 if cell >= 0.55 else 9
    lim = float(x.abs().max())
    for ax, (name, t, fmt, cmap) in zip(axes.flat, panels):
        data = t.detach().cpu()
        if name.startswith("codes"):
            vmin, vmax = qparams.qmin, qparams.qmax
        elif cmap == "Reds":
            vmin, vmax = 0.0, max(float(data.max()), 1e-12)
        else:
            vmin, vmax = -lim, lim
        im = ax.imshow(data.float().numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if max(x.shape) <= ANNOTATE_SIDE:
            for (i, j), v in zip(torch.cartesian_prod(torch.arange(x.shape[0]), torch.arange(x.shape[1])).tolist(),
                                 data.flatten().tolist()):
                dark = abs(im.norm(v) - (0.0 if cmap == "Reds" else 0.5)) > (0.6 if cmap == "Reds" else 0.3)
                ax.text(j, i, fmt.format(int(v) if fmt == "{:d}" else v), ha="center", va="center", fontsize=font,
                        color="white" if dark else "black")
        ax.set_title(name, fontsize=12)
        ax.set_xticks([])
        ax.set_yticks([])
    scheme = "symmetric" if qparams.symmetric else "asymmetric"
    fig.suptitle(title or f"{qparams.bits}-bit {scheme}, {qparams.granularity}")
    fig.tight_layout()
    return fig
