"""Plots for notebook 08, the LLM weight methods: NF4's codebook, HQQ's solver, GPTQ's error feedback,
AWQ's scale search, and bits per weight against quality."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from ..core.validation import check_bits, check_float_tensor
from ..core.granularity import PerChannel
from ..core.primitives import choose_qparams, fake_quantize
from ..methods.gptq import hessian, inverse_hessian_factor


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


def hqq_error_plot(histories: Mapping[str, Sequence[float]], baselines: Mapping[str, float] | None = None, ax=None):
    """HQQ's mean |W - W_hat| at every solver iteration, one line per label; optional dashed baselines (RTN).

    Shapes: histories label -> (iterations,) floats; baselines label -> float. Returns the figure.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise TypeError("histories must be a non-empty dict of label -> sequence of errors")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.4))
    for (label, history), colour in zip(histories.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        values = [float(v) for v in history]
        if not values:
            raise ValueError(f"history {label!r} is empty")
        ax.plot(range(len(values)), values, "o-", ms=3, color=colour, label=f"HQQ {label}")
        if baselines and label in baselines:
            ax.axhline(float(baselines[label]), color=colour, ls="--", lw=1, label=f"RTN {label}")
    ax.set_xlabel("iteration (0 = the min-max start, RTN's zero point)")
    ax.set_ylabel("mean |W - W_hat|")
    ax.set_title("HQQ: each half-quadratic step moves the zero point, the error falls")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


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

    Left: row `row`'s first `n` weights before and after the update. Right: the layer's output error
    mean((X W^T - X W'^T)^2) with column `column` rounded alone, and rounded with the update.
    Shapes: W (out, in), X (tokens, in). Returns the figure.
    """
    rounded, compensated = obs_step(W, X, bits, column)
    W32, X32 = W.float(), X.float()
    errs = [float((X32 @ (W32 - V).T).square().mean()) for V in (rounded, compensated)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
    k = torch.arange(min(n, W.shape[1]))
    left.plot(k.numpy(), W32[row, :len(k)].numpy(), "o", ms=5, label="float weights")
    left.plot(k.numpy(), compensated[row, :len(k)].numpy(), "x", ms=6, label="after the update")
    left.annotate("rounded", (column, float(rounded[row, column])), textcoords="offset points", xytext=(6, -14),
                  fontsize=8)
    left.set_xlabel(f"input column (row {row})")
    left.set_ylabel("weight")
    left.set_title(f"column {column} rounded to {bits} bits, the later columns shift to compensate")
    left.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, fontsize=8)
    bars = right.bar(["round only", "round + update"], errs, color=["tab:red", "tab:green"])
    right.bar_label(bars, fmt="%.2e", fontsize=8)
    right.set_ylabel("output MSE")
    right.set_title("the layer's output error")
    right.set_ylim(0, max(errs) * 1.25)
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


def pareto_plot(points: Mapping[str, tuple[float, float]], quality: str = "mean cosine to fp32",
                higher_is_better: bool = True, log_y: bool = False, ax=None):
    """Bits per weight against quality, one labelled point per method, the Pareto frontier drawn as a step line.

    A point is on the frontier when no other point has fewer (or equal) bits and better quality.
    Shapes: points label -> (bits_per_weight, quality). Returns the figure.
    """
    if not isinstance(points, Mapping) or not points:
        raise TypeError("points must be a non-empty dict of label -> (bits per weight, quality)")
    items = [(label, float(b), float(q)) for label, (b, q) in points.items()]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4))
    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)
    frontier = sorted((b, q) for label, b, q in items
                      if not any((b2 <= b and better(q2, q)) or (b2 < b and q2 == q) for _, b2, q2 in items))
    for label, b, q in items:
        ax.scatter(b, q, s=30)
        ax.annotate(label, (b, q), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.step([b for b, _ in frontier], [q for _, q in frontier], where="post", color="black", lw=0.8, alpha=0.6,
            label="Pareto frontier")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("bits per weight (from nbytes)")
    ax.set_ylabel(quality + ("" if higher_is_better else " (lower is better)"))
    ax.set_title("What each bit buys")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
