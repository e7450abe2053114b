"""Pictures for pruning and distillation: weight histograms, metric curves, soft targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from ..core.validation import check_float_tensor

__all__ = ["metric_curves", "soft_targets", "weight_histogram"]


def weight_histogram(W: torch.Tensor, keep: torch.Tensor, title: str | None = None, bins: int = 80):
    """Left: all weights, the removed ones (keep == False) in red. Right: what is left (zeros not drawn).

    Get `keep` from `magnitude_mask(W, sparsity)`, or as `W_pruned != 0`.
    Shapes: W (...), keep (...) bool, flattened -> a Figure with two Axes.
    """
    check_float_tensor(W, "W")
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.shape != W.shape:
        raise TypeError(f"keep must be a bool tensor of W's shape {tuple(W.shape)} (True = kept)")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    keep = keep.flatten().cpu()  # (n,)
    w = W.detach().float().flatten().cpu()  # (n,)
    edges = torch.linspace(float(w.min()), float(w.max()) + 1e-12, bins + 1).numpy()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.2), sharex=True)
    ax0.hist(w[keep].numpy(), bins=edges, color="tab:blue", alpha=0.85, label="kept")
    ax0.hist(w[~keep].numpy(), bins=edges, color="tab:red", alpha=0.85, label=f"removed ({int((~keep).sum())})")
    ax0.set_title("before: the smallest |w| are chosen")
    ax0.legend(loc="upper right", fontsize=8)
    ax1.hist(w[keep].numpy(), bins=edges, color="tab:blue", alpha=0.85)
    ax1.set_title(f"after: {int(keep.sum())} non-zero, a gap around 0")
    for ax in (ax0, ax1):
        ax.set_xlabel("weight value")
    ax0.set_ylabel("count")
    fig.suptitle(title or f"magnitude pruning: {float((~keep).float().mean()):.0%} of the weights removed")
    fig.tight_layout()
    return fig


def metric_curves(x: Sequence[float], curves: Mapping[str, Sequence[float]], xlabel: str, ylabel: str,
                  title: str = "", baseline: float | None = None, percent_x: bool = True):
    """One line per entry of `curves` (label -> y values at each x), an optional dashed baseline."""
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError("curves must be a non-empty dict {label: list of y values}")
    for label, ys in curves.items():
        if len(ys) != len(x):
            raise ValueError(f"curve {label!r} has {len(ys)} values for {len(x)} x values")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    xs = [100 * v for v in x] if percent_x else list(x)
    for label, ys in curves.items():
        ax.plot(xs, list(ys), marker="o", label=label)
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label=f"unpruned ({baseline:.1f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def soft_targets(logits: torch.Tensor, temperatures: Sequence[float], title: str = "teacher's soft targets"):
    """Grouped bars of softmax(logits / T) for each T. Shapes: logits (classes,) -> a Figure."""
    check_float_tensor(logits, "logits")
    if logits.ndim != 1:
        raise ValueError(f"logits must be one sample's logits, shape (classes,), got {tuple(logits.shape)}")
    if isinstance(temperatures, (str, bytes)) or not temperatures or not all(
            isinstance(T, (int, float)) and not isinstance(T, bool) and T > 0 for T in temperatures):
        raise ValueError(f"temperatures must be a non-empty list of positive numbers, got {temperatures!r}")
    z = logits.detach().float().cpu()
    n, width = len(z), 0.8 / len(temperatures)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for i, T in enumerate(temperatures):
        p = torch.softmax(z / T, dim=0)  # (classes,)
        ax.bar([c + (i - (len(temperatures) - 1) / 2) * width for c in range(n)], p.numpy(), width, label=f"T = {T:g}")
    ax.set_xticks(range(n))
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1.5)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: bars reach every corner
    fig.tight_layout()
    return fig
