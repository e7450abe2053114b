"""Sweep plots: SQNR against bits for several schemes, and SQNR against effective bits per weight (Pareto)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

__all__ = ["sqnr_vs_bits", "sqnr_vs_effective_bits"]


def sqnr_vs_bits(sweep: dict, title: str = "SQNR against bits"):
    """One line per scheme from `qlearn.teaching.sweep.sqnr_sweep(...)` ({label: {bits: sqnr_db}}).

    About 6 dB per bit is drawn dashed.

    Shapes: -> a Figure with one Axes.
    """
    if not isinstance(sweep, dict) or not sweep or not all(isinstance(v, dict) and v for v in sweep.values()):
        raise TypeError("sweep must be {label: {bits: sqnr_db}}, as returned by qlearn.teaching.sweep.sqnr_sweep")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, points in sweep.items():
        bits = sorted(points)
        ax.plot(bits, [points[b] for b in bits], marker="o", label=str(label))
    first = next(iter(sweep.values()))
    b0 = min(first)
    if math.isfinite(first[b0]):
        bits = sorted(first)
        ax.plot(bits, [first[b0] + 6.02 * (b - b0) for b in bits], "k--", lw=0.8, label="+6.02 dB per bit")
    ax.set_xlabel("bits")
    ax.set_ylabel("SQNR (dB, higher is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sqnr_vs_effective_bits(points: list, title: str = "SQNR against effective bits per weight"):
    """Scatter of `qlearn.teaching.sweep.pareto_sweep(...)` points, one color per bit width; the Pareto front is a line.

    Shapes: -> a Figure with one Axes.
    """
    if not isinstance(points, list) or not points or not all(
            isinstance(p, dict) and {"label", "bits", "effective_bits", "sqnr_db", "pareto"} <= set(p) for p in points):
        raise TypeError("points must be the list returned by qlearn.teaching.sweep.pareto_sweep")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for b in sorted({p["bits"] for p in points}):
        group = [p for p in points if p["bits"] == b]
        ax.scatter([p["effective_bits"] for p in group], [p["sqnr_db"] for p in group], label=f"{b}-bit codes",
                   zorder=3)
        for p in group:
            ax.annotate(p["label"].split(" ", 1)[1], (p["effective_bits"], p["sqnr_db"]), fontsize=7,
                        xytext=(3, -9), textcoords="offset points")
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["effective_bits"])
    ax.plot([p["effective_bits"] for p in front], [p["sqnr_db"] for p in front], "k-", lw=0.8, label="Pareto front")
    ax.set_xlabel("effective bits per weight (codes + each block's scale and zero point)")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
