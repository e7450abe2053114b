"""Plots for notebook 05: what a quantized weight row looks like, and bytes against fidelity."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core import metrics
from ..core.granularity import PerGroup
from ..core.primitives import choose_qparams, fake_quantize

__all__ = ["plot_bytes_vs_fidelity", "plot_group_reconstruction"]


def plot_group_reconstruction(W: torch.Tensor, bits: int, group_size: int, symmetric: bool = False,
                              n: int = 96, ax=None):
    """The first `n` weights of row 0 of W (dots) and their `bits`-bit reconstruction with PerGroup(group_size).

    The reconstructed values can only sit on the 2^bits levels of their group, drawn as faint lines.

    Shapes: W (out, in), in % group_size == 0. Returns the figure.
    """
    qp = choose_qparams(W, bits=bits, symmetric=symmetric, granularity=PerGroup(group_size))
    W_hat = fake_quantize(W, qparams=qp)  # (out, in)
    row, row_hat = W[0, :n], W_hat[0, :n]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    scale, zero_point = qp.scale[0, :, 0], qp.zero_point[0, :, 0]  # (in / g,) for row 0
    for k, start in enumerate(range(0, len(row), group_size)):
        stop = min(start + group_size, len(row))
        if bits <= 4:  # draw the grid of levels this group can represent
            levels = scale[k] * (torch.arange(qp.qmin, qp.qmax + 1) - zero_point[k])  # (2^bits,)
            ax.hlines(levels.numpy(), start - 0.5, stop - 0.5, color="grey", lw=0.4, alpha=0.5)
        ax.axvline(start - 0.5, color="black", lw=0.6, ls=":")
    ax.plot(row.numpy(), "o", ms=3, label="float32")
    ax.plot(row_hat.numpy(), "x", ms=4, label=f"int{bits}, groups of {group_size}")
    ax.set_xlabel("input index (row 0)")
    ax.set_ylabel("weight")
    ax.set_title(f"{bits} bits, group {group_size}: SQNR of the whole matrix {metrics.sqnr_db(W, W_hat):.1f} dB")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside, right of the data
    ax.figure.tight_layout()
    return ax.figure


def plot_bytes_vs_fidelity(rows, ax=None):
    """Scatter of (label, size as a fraction of float32, cosine similarity to float32). Returns the figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, size, cosine in rows:
        ax.scatter(size, cosine)
        ax.annotate(label, (size, cosine), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("model bytes / float32 bytes")
    ax.set_ylabel("mean cosine similarity to float32")
    ax.set_title("Smaller model, less faithful embeddings")
    ax.grid(alpha=0.3)
    return ax.figure
