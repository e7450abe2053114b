"""Where the quantization error goes: a histogram of x - x_hat (one, or several on a shared x-axis)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core import metrics
from ..core.validation import check_float_tensor, check_same_shape

__all__ = ["error_histogram", "error_histograms"]


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    return bins


def _draw(ax, x: torch.Tensor, x_hat: torch.Tensor, title: str, bins):
    """One histogram of e = x - x_hat on `ax`, with MSE and SQNR in a box above the bars."""
    check_float_tensor(x, "x")
    check_float_tensor(x_hat, "x_hat")
    check_same_shape(x, x_hat, ("x", "x_hat"))
    err = (x.detach().float() - x_hat.detach().float().to(x.device)).flatten().cpu()  # (n,)
    counts, _, _ = ax.hist(err.numpy(), bins=bins, color="tab:blue", alpha=0.85)
    ax.set_ylim(0, 1.35 * float(counts.max()))  # headroom: the text box sits above the bars, not on them
    ax.set_ylabel("count")
    text = f"MSE {metrics.mse(x, x_hat):.3g}\nSQNR {metrics.sqnr_db(x, x_hat):.1f} dB"
    ax.text(0.98, 0.96, text, transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
    ax.set_title(title)


def error_histogram(x: torch.Tensor, x_hat: torch.Tensor, title: str | None = None, bins: int = 80):
    """Histogram of the error e = x - x_hat, annotated with MSE and SQNR.

    Shapes: x, x_hat (...) (flattened) -> a Figure with one Axes.
    """
    _check_bins(bins)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _draw(ax, x, x_hat, title or "quantization error", bins)
    ax.set_xlabel("error  x - x_hat")
    fig.tight_layout()
    return fig


def error_histograms(x: torch.Tensor, x_hats: dict, bins: int = 80, title: str | None = None):
    """One error histogram per reconstruction, stacked on ONE shared x-axis (and shared bins) so that their
    widths compare at a glance.

    `x_hats` maps a label to x_hat, e.g. {"8-bit symmetric": ..., "8-bit asymmetric": ...}.
    Shapes: x (...), each x_hat like x -> a Figure with len(x_hats) Axes.
    """
    _check_bins(bins)
    if not isinstance(x_hats, dict) or not x_hats:
        raise TypeError("x_hats must be a non-empty dict {label: x_hat}")
    check_float_tensor(x, "x")
    spans = [float((x.detach().float() - x_hat.detach().float().to(x.device)).abs().max())
             for x_hat in x_hats.values() if isinstance(x_hat, torch.Tensor) and x_hat.shape == x.shape]
    edges = torch.linspace(-max(spans, default=1.0), max(spans, default=1.0), bins + 1).numpy() if spans else bins
    fig, axes = plt.subplots(len(x_hats), 1, figsize=(6, 1.2 + 2.2 * len(x_hats)), sharex=True, squeeze=False)
    for ax, (label, x_hat) in zip(axes[:, 0], x_hats.items()):
        _draw(ax, x, x_hat, str(label), edges)  # the same bin edges everywhere: widths AND heights compare
    axes[-1, 0].set_xlabel("error  x - x_hat (shared axis)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
