"""Plots for notebook 08, the LLM weight methods: NF4's codebook, HQQ's solver, GPTQ's error feedback,
AWQ's scale search, and bits per weight against quality."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from ..core.granularity import PerChannel
from ..core.primitives import choose_qparams, fake_quantize
from ..core.validation import check_bits, check_float_tensor
from ..methods.gptq import hessian, inverse_hessian_factor

__all__ = ["awq_plot", "hqq_error_plot", "nf4_codebook_plot", "obs_plot", "obs_step", "pareto_plot"]


def nf4_codebook_plot(code: torch.Tensor, weights: torch.Tensor | None = None, ax=None):
    """The 16 NF4 values over the normal density they were cut from, beside the 16 uniform int4 levels.

    The density is N(0, 1) rescaled so that its outermost quantile lands on 1 (the code's own scaling);
    `weights`, if given, are real weights divided by their block absmax, drawn as a histogram.
    Shapes: code (16,) sorted in [-1, 1]; weights (...) in [-1, 1] or None. Returns the figure.
    """
    check_float_tensor(code, "code")
    if code.ndim != 1 or code.numel() < 2:
        raise ValueError(f"code must be a 1-D table of at least 2 values, got shape {tuple(code.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    c = float(torch.special.ndtri(torch.tensor(0.9677083, dtype=torch.float64)))  # the quantile mapped to 1
    x = torch.linspace(-1.05, 1.05, 400, dtype=torch.float64)
    density = torch.exp(-0.5 * (x * c) ** 2) / math.sqrt(2 * math.pi) * c  # N(0, 1) in code units
    if weights is not None:
        check_float_tensor(weights, "weights")
        ax.hist(weights.detach().flatten().float().clamp(-1, 1).numpy(), bins=80, density=True, color="tab:grey",
                alpha=0.35, label="MiniLM weights / block absmax")
    ax.plot(x.numpy(), density.numpy(), color="black", lw=1.2, label="normal density")
    ax.vlines(code.float().numpy(), 0, float(density.max()) * 1.05, color="tab:blue", lw=1.3, label="NF4 codes")
    uniform = torch.arange(-8, 8) / 7.0  # absmax int4: -8..7 times absmax / 7, -8 never reached
    ax.plot(uniform.numpy(), [-0.04] * 16, "|", color="tab:orange", ms=12, mew=1.6, label="uniform int4 levels")
    ax.set_xlim(-1.1, 1.1)
    ax.set_xlabel("w / absmax of its block")
    ax.set_ylabel("density")
    ax.set_title("NF4 puts its 16 levels where a normal weight has most of its mass")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def hqq_error_plot(histories: Mapping[str, Sequence[float]], baselines: Mapping[str, float] | None = None):
    """HQQ's mean |W - W_hat| at every solver iteration, one panel per label, each with its own y axis (the errors
    of different widths differ several fold, and one shared axis would flatten every curve); optional dashed
    baselines (RTN) in the same panels.

    Shapes: histories label -> (iterations,) floats; baselines label -> float. Returns the figure.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise TypeError("histories must be a non-empty dict of label -> sequence of errors")
    fig, axes = plt.subplots(1, len(histories), figsize=(3.3 * len(histories) + 1.6, 3.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (label, history), colour in zip(axes[0], histories.items(), colours):
        values = [float(v) for v in history]
        if not values:
            raise ValueError(f"history {label!r} is empty")
        ax.plot(range(len(values)), values, "o-", ms=3, color=colour, label="HQQ")
        if baselines and label in baselines:
            ax.axhline(float(baselines[label]), color=colour, ls="--", lw=1, label="RTN")
        shown = values + ([float(baselines[label])] if baselines and label in baselines else [])
        low, high = min(shown), max(shown)
        pad = 0.15 * (high - low) or 0.05 * abs(high) or 1.0
        ax.set_ylim(low - pad, high + pad)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="center right")
    axes[0, 0].set_ylabel("mean |W - W_hat|")
    fig.suptitle("HQQ: each half-quadratic step moves the zero point, the error falls "
                 "(iteration 0 = the min-max start)", fontsize=10)
    fig.tight_layout()
    return fig


def obs_step(W: torch.Tensor, X: torch.Tensor, bits: int, column: int = 0, damp: float = 0.01):
    """One Optimal Brain Surgeon step of GPTQ: round `column` of W, push its error onto the later columns.

    e = (w_j - q_j) / U[j, j];   w_k -= e U[j, k] for k > j   (U: upper Cholesky factor of H^-1)
    Returns (rounded only, rounded and compensated), both (out, in); grids are per output row.
    Shapes: W (out, in), X (tokens, in).
    """
    check_float_tensor(W, "W")
    check_float_tensor(X, "X")
    check_bits(bits)
    if W.ndim != 2 or X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"W must be (out, in) and X (tokens, in), got {tuple(W.shape)} and {tuple(X.shape)}")
    if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column < W.shape[1]:
        raise ValueError(f"column must be an int in [0, {W.shape[1]}), got {column!r}")
    U = inverse_hessian_factor(hessian(X), damp)  # (in, in) upper, in W's column order
    qp = choose_qparams(W, bits=bits, granularity=PerChannel(0))
    q = fake_quantize(W, qparams=qp)[:, column]  # (out,) the rounded column
    rounded = W.clone().float()
    rounded[:, column] = q
    err = (W[:, column] - q) / U[column, column]  # (out,)
    compensated = rounded.clone()
    compensated[:, column + 1:] -= err[:, None] * U[column, column + 1:][None, :]  # (out, in - j - 1)
    return rounded, compensated


def obs_plot(W: torch.Tensor, X: torch.Tensor, bits: int = 2, column: int = 0, row: int = 0, n: int = 24):
    """GPTQ's idea in one picture: round one column, then let the not-yet-rounded weights absorb its error.

    Left: how much each of row `row`'s later weights (of the first `n`) changes, W' - W: the update that compensates,
    drawn at its own scale (it is small next to the weights and to the rounding error of `column`, which the legend
    prints).
    Right: the layer's output error mean((X W^T - X W'^T)^2) with column `column` rounded alone, and rounded with
    the update (log scale: the update removes most of it).
    Shapes: W (out, in), X (tokens, in). Returns the figure.
    """
    rounded, compensated = obs_step(W, X, bits, column)
    W32, X32 = W.float(), X.float()
    errs = [float((X32 @ (W32 - V).T).square().mean()) for V in (rounded, compensated)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    k = torch.arange(min(n, W.shape[1]))
    change = (compensated[row, :len(k)] - W32[row, :len(k)]).numpy()  # (n,)
    later = k[k > column].numpy()
    left.bar(later, change[later], color="tab:green", label="later columns: the update (this scale)")
    left.axhline(0, color="black", lw=0.6)
    left.axvspan(column - 0.45, column + 0.45, color="tab:red", alpha=0.25,
                 label=f"column {column}: rounded, moved by {change[column]:+.4f}")
    left.set_xlim(-0.8, len(k) - 0.2)
    left.set_xlabel(f"input column (row {row})")
    left.set_ylabel("change of the weight, W' - W")
    left.set_title(f"column {column} rounded to {bits} bits, the later columns shift to compensate", fontsize=10)
    left.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, fontsize=8)
    left.grid(alpha=0.3, axis="y")
    bars = right.bar(["round only", "round + update"], errs, color=["tab:red", "tab:green"])
    right.bar_label(bars, fmt="%.2e", fontsize=8)
    right.set_yscale("log")
    right.set_ylabel("output MSE (log scale)")
    right.set_title("the layer's output error", fontsize=10)
    right.set_ylim(min(errs) / 3, max(errs) * 5)
    fig.tight_layout()
    return fig


def awq_plot(x_mean: torch.Tensor, alphas: Sequence[float], losses: Sequence[float], top: int = 8):
    """AWQ's two pictures: mean |x| per input channel (the `top` salient ones marked) and the loss of each alpha.

    Shapes: x_mean (in,); alphas, losses (n_grid,). Returns the figure.
    """
    check_float_tensor(x_mean, "x_mean")
    if x_mean.ndim != 1:
        raise ValueError(f"x_mean must be 1-D (in,), got shape {tuple(x_mean.shape)}")
    alphas, losses = [float(a) for a in alphas], [float(v) for v in losses]
    if not alphas or len(alphas) != len(losses):
        raise ValueError(f"alphas and losses must be non-empty and of one length, got {len(alphas)} and {len(losses)}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    x = x_mean.detach().float().cpu()
    salient = torch.topk(x, min(top, x.numel())).indices
    left.bar(range(x.numel()), x.numpy(), width=1.0, color="tab:grey")
    left.plot(salient.numpy(), x[salient].numpy(), "v", color="tab:red", label=f"the {len(salient)} salient channels")
    left.set_xlabel("input channel")
    left.set_ylabel("mean |x| over tokens")
    left.set_title("a few channels carry much larger activations")
    left.legend(loc="upper right", fontsize=8)
    best = min(range(len(losses)), key=losses.__getitem__)
    right.plot(alphas, losses, "o-", ms=4)
    right.plot([alphas[best]], [losses[best]], "*", ms=14, color="tab:red", label=f"best alpha = {alphas[best]:.2f}")
    right.set_xlabel("alpha in s = mean|x|^alpha")
    right.set_ylabel("output MSE")
    right.set_title("AWQ's scale search (alpha = 0 is RTN)")
    right.grid(alpha=0.3)
    right.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    return fig


def _place_labels(ax, items, step: float = 9.0, tries: int = 24) -> list:
    """Write each label beside its point, moved up or down (with a thin leader line) until it overlaps no other
    label and stays inside the axes (the legend sits outside them). Each label and its line take the colour of
    their point. `items` holds (label, x, y, colour). Returns the annotations.

    Offsets are tried nearest first: 0, +step, -step, +2 step, ... points.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    dots = [ax.transData.transform((x, y)) for _, x, y, _ in items]  # the points themselves: no label covers one
    placed, annotations = [Bbox.from_extents(u - 4, v - 4, u + 4, v + 4) for u, v in dots], []
    for label, x, y, colour in sorted(items, key=lambda item: (item[1], item[2])):  # left to right, bottom to top
        for k in range(2 * tries + 1):
            dy = step * ((k + 1) // 2) * (1 if k % 2 else -1)
            ann = ax.annotate(label, (x, y), xytext=(7, dy - 3), textcoords="offset points", fontsize=8, color=colour,
                              arrowprops=dict(arrowstyle="-", lw=0.7, color=colour, shrinkA=0, shrinkB=3)
                              if dy else None)
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer)  # the text alone, not its leader line
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
            if k < 2 * tries:
                ann.remove()
        placed.append(box)
        annotations.append(ann)
    return annotations


def pareto_plot(points: Mapping[str, tuple[float, float]], quality: str = "mean cosine to fp32",
                higher_is_better: bool = True, log_y: bool = False, ax=None):
    """Bits per weight against quality, one labelled point per method, the Pareto frontier drawn as a step line.

    A point is on the frontier when no other point has fewer (or equal) bits and better quality. Labels that
    would overlap are moved apart, each joined to its point by a thin line.
    Shapes: points label -> (bits_per_weight, quality). Returns the figure.
    """
    if not isinstance(points, Mapping) or not points:
        raise TypeError("points must be a non-empty dict of label -> (bits per weight, quality)")
    items = [(label, float(b), float(q)) for label, (b, q) in points.items()]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.8))
    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)
    frontier = sorted((b, q) for label, b, q in items
                      if not any((b2 <= b and better(q2, q)) or (b2 < b and q2 == q) for _, b2, q2 in items))
    colours = [ax.scatter(b, q, s=30, zorder=3).get_facecolor()[0] for _, b, q in items]
    ax.step([b for b, _ in frontier], [q for _, q in frontier], where="post", color="black", lw=0.8, alpha=0.6,
            label="Pareto frontier")
    if log_y:
        ax.set_yscale("log")
    bits = [b for _, b, _ in items]
    span = max(max(bits) - min(bits), 0.5)
    ax.set_xlim(min(bits) - 0.05 * span, max(bits) + 0.3 * span)  # room for the labels right of the points
    low, high = ax.get_ylim()
    if log_y:
        ax.set_ylim(low / 1.5, high * 3)  # room to move labels up and down
    else:
        ax.set_ylim(low - 0.1 * (high - low), high + 0.25 * (high - low))
    ax.set_xlabel("bits per weight (from nbytes)")
    ax.set_ylabel(quality + ("" if higher_is_better else " (lower is better)"))
    ax.set_title("What each bit buys")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.figure.tight_layout()
    _place_labels(ax, [(*item, colour) for item, colour in zip(items, colours)])
    return ax.figure
