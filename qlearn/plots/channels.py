"""Per-channel ranges of a weight: why one scale per row beats one scale for the whole matrix."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core.validation import check_bool, check_float_tensor

__all__ = ["channel_ranges"]


def channel_ranges(W: torch.Tensor, sort: bool = False, title: str = "per-channel ranges"):
    """Min and max of each row (output channel) of W as a band, with the per-tensor range as dashed lines.

    Shapes: W (out, in) -> a Figure with one Axes (x axis: channel index, or rank when sort=True).
    """
    check_float_tensor(W, "W")
    check_bool(sort, "sort")
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D weight (out, in), got shape {tuple(W.shape)}")
    W = W.detach().float().cpu()
    lo, hi = W.amin(dim=1), W.amax(dim=1)  # (out,), (out,)
    if sort:
        order = (hi - lo).argsort()  # (out,)
        lo, hi = lo[order], hi[order]
    idx = torch.arange(W.shape[0]).numpy()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.fill_between(idx, lo.numpy(), hi.numpy(), step="mid", alpha=0.6, label="row min .. max")
    ax.axhline(float(W.min()), color="k", ls="--", lw=0.8, label="tensor min / max")
    ax.axhline(float(W.max()), color="k", ls="--", lw=0.8)
    ax.set_xlabel("output channel" + (" (sorted by range)" if sort else ""))
    ax.set_ylabel("weight value")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
