"""Pictures for LoRA / QLoRA: the memory budget of fine-tuning, the low-rank update, loss curves, a rank sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import FuncFormatter

from ..core.validation import check_float_tensor

__all__ = ["PARTS", "UNITS", "loss_curves", "low_rank_update", "memory_bars", "rank_sweep"]

PARTS = (("base", "frozen or trained weights", "tab:blue"), ("adapters", "LoRA adapters", "tab:green"),
         ("gradients", "gradients", "tab:orange"), ("optimizer", "Adam moments", "tab:red"))
UNITS = {"GB": 1e9, "MB": 1e6}


def memory_bars(tables: Mapping[str, Mapping[str, Mapping[str, float]]], units: Mapping[str, str] | None = None):
    """Stacked bars, one panel per model: {model: {recipe: {"base", "adapters", "gradients", "optimizer"}}}.

    Each bar is one recipe; its segments are the bytes of the weights, adapters, gradients and
    Adam's moments (activations not included), in the panel's unit: units = {model: "GB" or "MB"} (default GB).
    """
    if not isinstance(tables, Mapping) or not tables:
        raise TypeError("tables must be a non-empty dict {model name: {recipe: {part: bytes}}}")
    units = dict(units or {})
    if not all(units.get(model, "GB") in UNITS for model in tables):
        raise ValueError(f"units must map model names to one of {sorted(UNITS)}, got {units!r}")
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.8), squeeze=False)
    for ax, (model, table) in zip(axes[0], tables.items()):
        unit_name = units.get(model, "GB")
        unit = UNITS[unit_name]
        recipes = list(table)
        bottom = [0.0] * len(recipes)
        for part, label, color in PARTS:
            heights = [table[r][part] / unit for r in recipes]
            ax.bar(range(len(recipes)), heights, bottom=bottom, color=color, label=label)
            bottom = [b + h for b, h in zip(bottom, heights)]
        top = max(bottom)
        for i, total in enumerate(bottom):
            ax.text(i, total + 0.02 * top, f"{total:,.0f}" if total >= 100 else f"{total:.3g}", ha="center",
                    va="bottom", fontsize=9)
        ax.set_xticks(range(len(recipes)), [r.replace(" (", "\n(") for r in recipes], fontsize=8)
        ax.set_ylim(0, 1.15 * top)
        ax.set_ylabel(f"{unit_name} (activations not counted)")
        ax.set_title(model)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle("memory to fine-tune: weights + gradients + optimizer state")
    fig.tight_layout()
    return fig


def low_rank_update(B: torch.Tensor, A: torch.Tensor, scaling: float = 1.0):
    """The update scaling * B A drawn as what it is: a thin (out, r) matrix times a flat (r, in) one.

    Shapes: B (out, r), A (r, in) -> a Figure with three heatmaps: B, A and their product (out, in).
    """
    check_float_tensor(B, "B")
    check_float_tensor(A, "A")
    if B.ndim != 2 or A.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(f"B must be (out, r) and A (r, in) with the same r, got {tuple(B.shape)} and {tuple(A.shape)}")
    B, A = B.detach().float().cpu(), A.detach().float().cpu()
    delta = scaling * B @ A  # (out, in)
    out, r, n_in = B.shape[0], B.shape[1], A.shape[1]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), gridspec_kw={"width_ratios": [max(r, 2), n_in, n_in]})
    panels = [(B, f"B ({out} x {r})"), (A, f"A ({r} x {n_in})"), (delta, f"(alpha/r) B A ({out} x {n_in}), rank {r}")]
    for ax, (M, title) in zip(axes, panels):
        lim = float(M.abs().max()) or 1.0
        ax.imshow(M.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="equal", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for left, right, sign in ((axes[0], axes[1], "x"), (axes[1], axes[2], "=")):
        x = (left.get_position().x1 + right.get_position().x0) / 2
        fig.text(x, 0.5, sign, fontsize=16, ha="center", va="center")
    fig.suptitle(f"{r * (out + n_in)} trained numbers make an update of {out * n_in} numbers")
    return fig


def loss_curves(curves: Mapping[str, Sequence[float]], title: str = "LoRA training loss"):
    """One line per run (label -> loss at each step), side by side on one axis."""
    if not isinstance(curves, Mapping) or not curves or not all(len(v) for v in curves.values()):
        raise TypeError("curves must be a non-empty dict {label: non-empty list of losses}")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), list(losses), marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def rank_sweep(ranks: Sequence[int], params: Sequence[int], adapter_bytes: Sequence[float],
               final_loss: Sequence[float | None], r: int, total_params: int):
    """Left: trained share of the parameters vs r (log-log); right: final training loss vs r (None: not
    measured, not drawn); r highlighted."""
    if not (len(ranks) == len(params) == len(adapter_bytes) == len(final_loss)) or r not in ranks:
        raise ValueError("ranks, params, adapter_bytes and final_loss must have one value per rank, and r in ranks")
    i = list(ranks).index(r)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.4))
    share = [100 * p / total_params for p in params]
    ax0.plot(ranks, share, marker="o")
    ax0.plot([r], [share[i]], marker="o", markersize=12, color="tab:red", label=f"r={r}: {share[i]:.2f} %")
    ax0.set_xscale("log", base=2)
    ax0.set_yscale("log")
    ax0.set_xlabel("rank r")
    ax0.set_ylabel("parameters trained (%)")
    ax0.set_title(f"adapters: {params[i]:,} parameters, {adapter_bytes[i] / 2**20:.1f} MiB")
    ax0.legend(fontsize=8)
    measured = [(k, v) for k, v in zip(ranks, final_loss) if v is not None]
    ax1.plot([k for k, _ in measured], [v for _, v in measured], marker="o", color="tab:green", label="measured")
    if final_loss[i] is not None:
        ax1.plot([r], [final_loss[i]], marker="o", markersize=12, color="tab:red", label=f"r={r}: {final_loss[i]:.2f}")
    else:
        ax1.set_title(f"r={r}: not measured")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("rank r")
    ax1.set_ylabel("final training loss")
    if final_loss[i] is not None:
        ax1.set_title("what the extra parameters buy")
    ax1.set_xlim(min(ranks) / 1.5, max(ranks) * 1.5)
    ax1.legend(fontsize=8)
    for ax in (ax0, ax1):
        ax.set_xticks(list(ranks), [str(k) for k in ranks])
        ax.grid(alpha=0.3)
    ax0.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax0.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    fig.tight_layout()
    return fig
