"""Plots for notebook 05: what a quantized weight row looks like, and bytes against fidelity."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import metrics
from ..granularity import PerGroup
from ..primitives import choose_qparams, fake_quantize


def plot_group_reconstruction(W: torch.Tensor, bits: int, group_size: int, symmetric: bool = False,
                              n: int = 192, ax=None):
    """The first `n` weights of row 0 of W and their `bits`-bit reconstruction with PerGroup(group_size).

    Shapes: W (out, in), in % group_size == 0. Returns the figure.
    """
    qp = choose_qparams(W, bits=bits, symmetric=symmetric, granularity=PerGroup(group_size))
    W_hat = fake_quantize(W, qparams=qp)  # (out, in)
    row, row_hat = W[0, :n], W_hat[0, :n]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    ax.plot(row.numpy(), lw=0.8, label="float32")
    ax.step(range(len(row_hat)), row_hat.numpy(), where="mid", lw=0.9, label=f"int{bits}, groups of {group_size}")
    for start in range(0, n, group_size):
        ax.axvline(start, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("input index (row 0)")
    ax.set_ylabel("weight")
    ax.set_title(f"{bits} bits, group {group_size}: SQNR of the whole matrix {metrics.sqnr_db(W, W_hat):.1f} dB")
    ax.legend(loc="upper right", fontsize=8)
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
