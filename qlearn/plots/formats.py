"""Block float formats on a real weight: the error histogram of one (element, block, scale) choice, for the widget
of notebook 11, and the share of the grid each block uses under a power-of-two (E8M0) or an E4M3 scale."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core import metrics
from ..methods import block_float
from .errors import _draw

__all__ = ["format_error_figure", "grid_use_histogram"]


def format_error_figure(W: torch.Tensor, element: str = "e2m1", block_size: int = 32, scale: str = "e8m0",
                        bins: int = 80):
    """Histogram of W - W_hat for block_float.quantize_dequantize(W, element, block_size, scale), titled with the
    bits per weight. Returns (figure, {"bits_per_weight", "relative_error"}). Shapes: W (out, in)."""
    W_hat = block_float.quantize_dequantize(W, element, block_size, scale)
    bits = block_float.bits_per_weight(element, block_size, scale, numel=W.numel())
    rel = (metrics.mse(W, W_hat) / metrics.mse(W, torch.zeros_like(W))) ** 0.5
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _draw(ax, W, W_hat, f"{element.upper()} elements, blocks of {block_size}, {scale.upper()} scale: "
                        f"{bits:.3f} bits per weight, relative error {rel:.4f}", bins)
    ax.set_xlabel("w - w_hat")
    fig.tight_layout()
    return fig, {"bits_per_weight": bits, "relative_error": rel}


def grid_use_histogram(ratios: dict[str, torch.Tensor], bins: int = 60):
    """One histogram per scale kind of r = amax / (scale * 6) per block: r > 1 is clipped, r < 1 leaves the top of
    the E2M1 grid unused. Shapes: ratios label -> (blocks,). Returns the figure."""
    if not isinstance(ratios, dict) or not ratios:
        raise TypeError("ratios must be a non-empty dict of label -> tensor of amax / (scale * 6) per block")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for label, r in ratios.items():
        ax.hist(r.detach().float().flatten().numpy(), bins=bins, alpha=0.6, label=label)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("amax / (scale * 6)   (1: the block's largest weight lands on 6)")
    ax.set_ylabel("blocks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
