"""Where the quantization error goes: a histogram of x - x_hat."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core import metrics
from ..core.validation import check_float_tensor, check_same_shape


def error_histogram(x: torch.Tensor, x_hat: torch.Tensor, title: str | None = None, bins: int = 80):
    """Histogram of the error e = x - x_hat, annotated with MSE and SQNR.

    Shapes: x, x_hat (...) (flattened) -> a Figure with one Axes.
    """
    check_float_tensor(x, "x")
    check_float_tensor(x_hat, "x_hat")
    check_same_shape(x, x_hat, ("x", "x_hat"))
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    err = (x.detach().float() - x_hat.detach().float().to(x.device)).flatten().cpu()  # (n,)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(err.numpy(), bins=bins, color="tab:blue", alpha=0.85)
    ax.set_xlabel("error  x - x_hat")
    ax.set_ylabel("count")
    text = f"MSE {metrics.mse(x, x_hat):.3g}\nSQNR {metrics.sqnr_db(x, x_hat):.1f} dB"
    ax.text(0.98, 0.95, text, transform=ax.transAxes, ha="right", va="top",
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
    ax.set_title(title or "quantization error")
    fig.tight_layout()
    return fig
