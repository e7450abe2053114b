"""Activation outliers: where they sit, what LLM.int8()'s threshold keeps, and how SmoothQuant moves them.

    activation_heatmap   |X| as tokens x channels: the outlier channels are bright vertical stripes
    channel_max_plot     each layer's per-channel max|X_j|, the outlier dims marked
    migration_plot       SmoothQuant: activation and weight per-channel maxima before and after X/s, W*s
    alpha_sweep_plot     the error of smoothed W8A8 against alpha (U-shaped), the chosen alpha marked
    threshold_plot       LLM.int8(): channel maxima with the threshold, and error / float share per threshold
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import PowerNorm

from ..core.validation import check_bool, check_float_tensor

__all__ = ["activation_heatmap", "alpha_sweep_plot", "channel_max_plot", "migration_plot", "threshold_plot"]


def _matrix(X, name: str) -> torch.Tensor:
    check_float_tensor(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(X.shape)}")
    return X.detach().float().cpu()


def _vector(v, name: str, size: int | None = None) -> torch.Tensor:
    check_float_tensor(v, name)
    if v.ndim != 1 or (size is not None and v.numel() != size):
        want = f"({size},)" if size is not None else "1-D"
        raise ValueError(f"{name} must be {want}, got shape {tuple(v.shape)}")
    return v.detach().float().cpu()


def _dims(dims, size: int) -> list[int]:
    dims = [] if dims is None else [int(d) for d in dims]
    if any(not 0 <= d < size for d in dims):
        raise ValueError(f"outlier dims must be channel indices in [0, {size}), got {dims}")
    return dims


def activation_heatmap(X: torch.Tensor, title: str = "|X|", dims=None):
    """|X_tj| as an image, tokens down and channels across; `dims` are labelled on the x axis.

    The colours follow sqrt(|x|) (a power norm), so that a channel that is large in every token shows as a stripe
    even next to a single much larger value.
    Shapes: X (tokens, in) -> a Figure with the image and a colorbar.
    """
    A = _matrix(X, "X").abs()
    dims = _dims(dims, A.shape[1])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    im = ax.imshow(A.numpy(), aspect="auto", cmap="magma", interpolation="nearest",
                   norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=float(A.max()) or 1.0))
    fig.colorbar(im, ax=ax, label="|x| (square-root colour scale)", pad=0.01)
    for d in dims:
        ax.annotate(str(d), (d, 0), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                    fontsize=9, fontweight="bold", color="tab:red", annotation_clip=False)
    ax.set_xlabel("channel (hidden dimension)")
    ax.set_ylabel("token")
    ax.set_title(title, pad=18 if dims else 6)
    fig.tight_layout()
    return fig


def channel_max_plot(absmax: dict, dims=None, threshold: float | None = None, title: str | None = None,
                     log_y: bool = False):
    """One panel per layer: max over tokens of |X_j| for every channel j; `dims` labelled on top.

    In each panel a dim gets a red dot where it reaches `threshold` (everywhere when threshold is None); without
    `dims`, every channel that reaches `threshold` gets one. The panels share one y axis, logarithmic when `log_y`
    (for maxima that differ by orders of magnitude from layer to layer).
    Shapes: absmax {layer name: (in,)} (all the same in) -> a Figure with len(absmax) rows.
    """
    if not isinstance(absmax, dict) or not absmax:
        raise TypeError("absmax must be a non-empty dict of layer name -> per-channel max (in,)")
    vecs = {name: _vector(v, f"absmax[{name!r}]") for name, v in absmax.items()}
    size = {v.numel() for v in vecs.values()}
    if len(size) != 1:
        raise ValueError(f"every layer's absmax must have the same length, got {sorted(size)}")
    dims = sorted(_dims(dims, size.pop()))
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise TypeError(f"threshold must be a finite number or None, got {threshold!r}")
    check_bool(log_y, "log_y")
    fig, axes = plt.subplots(len(vecs), 1, figsize=(8, 0.95 * len(vecs) + 1.3), sharex=True, squeeze=False)
    top = max(float(v.max()) for v in vecs.values())
    positive = [float(v[v > 0].min()) for v in vecs.values() if bool((v > 0).any())]
    for ax, (name, v) in zip(axes[:, 0], vecs.items()):
        ax.plot(v.numpy(), lw=0.7, color="tab:blue")
        candidates = dims if dims or threshold is None else range(v.numel())
        marked = [d for d in candidates if threshold is None or float(v[d]) >= threshold]
        ax.plot(marked, v[marked].numpy(), "o", ms=4, color="tab:red",
                label=("outlier dims" if dims else "channels") +
                      ("" if threshold is None else f" with max|x| >= {threshold:g}"))
        if threshold is not None:
            ax.axhline(threshold, color="k", ls="--", lw=0.7, label=f"|x| = {threshold:g}")
        if log_y:
            ax.set_yscale("log")
            ax.set_ylim(min(positive, default=1e-3) / 1.5, 2 * top)
        else:
            ax.set_ylim(0, 1.1 * top)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    first, last_x, level = axes[0, 0], None, 0
    for d in dims:  # labels above the first panel, staggered where neighbours would overlap
        level = level + 1 if last_x is not None and d - last_x < 0.03 * len(v) else 0
        first.annotate(str(d), (d, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2 + 8 * (level % 2)),
                       textcoords="offset points", ha="center", va="bottom", fontsize=7, color="tab:red")
        last_x = d
    if dims or threshold is not None:
        first.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    axes[-1, 0].set_xlabel("channel (hidden dimension)")
    fig.suptitle(title or "per-channel max|x| in each layer", fontsize=10)
    fig.tight_layout()
    return fig


def migration_plot(act_absmax: torch.Tensor, w_absmax: torch.Tensor, s: torch.Tensor, alpha: float | None = None):
    """Per-channel max|X_j| and max|W_j| before smoothing (top) and after, max|X_j| / s_j and max|W_j| s_j (bottom).

    Shapes: act_absmax (in,), w_absmax (in,) (max over the weight's output rows), s (in,) -> a Figure, 2 rows.
    """
    a = _vector(act_absmax, "act_absmax")
    w = _vector(w_absmax, "w_absmax", a.numel())
    s = _vector(s, "s", a.numel())
    if bool((s <= 0).any()):
        raise ValueError("the smoothing factors s must be positive")
    fig, axes = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True, sharey=True)
    label = "" if alpha is None else f" (alpha = {alpha:g})"
    for ax, (x_max, w_max, what) in zip(axes, ((a, w, "before smoothing"), (a / s, w * s, "after smoothing" + label))):
        ax.semilogy(x_max.numpy(), lw=0.8, color="tab:blue", label="activation max|X_j|" if ax is axes[0] else
                    "activation max|X_j| / s_j")
        ax.semilogy(w_max.numpy(), lw=0.8, color="tab:orange", label="weight max|W_j|" if ax is axes[0] else
                    "weight max|W_j| * s_j")
        ratio = float(x_max.max() / x_max.median())
        ax.set_title(f"{what}: activation max / median channel max = {ratio:.1f}", fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_ylabel("per-channel max")
    axes[-1].set_xlabel("input channel j")
    fig.tight_layout()
    return fig


def alpha_sweep_plot(alphas, errors: dict, chosen=None, ylabel: str = "1 - cosine to fp32"):
    """Error against alpha, one line per label, log y; a star at each line's chosen alpha.

    `chosen` is one alpha for every line, or {label: alpha}; it must be one of `alphas`.
    Shapes: alphas (n,) numbers; errors {label: (n,) numbers} -> a Figure with one Axes.
    """
    if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__iter__"):
        raise TypeError(f"alphas must be a list of numbers, got {alphas!r}")
    alphas = [float(a) for a in alphas]
    if not alphas or not isinstance(errors, dict) or not errors:
        raise TypeError("alphas must be a non-empty list and errors a non-empty dict of label -> errors per alpha")
    picks = chosen if isinstance(chosen, dict) else {label: chosen for label in errors}
    bad = [a for a in picks.values() if a is not None and float(a) not in alphas]
    if bad:
        raise ValueError(f"chosen alpha {bad[0]!r} is not one of the swept alphas {alphas}")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label, errs in errors.items():
        errs = [float(e) for e in errs]
        if len(errs) != len(alphas) or any(not math.isfinite(e) or e <= 0 for e in errs):
            raise ValueError(f"errors[{label!r}] must hold {len(alphas)} finite positive numbers, one per alpha")
        pick = picks.get(label)
        text = label if pick is None else f"{label}; chosen alpha {float(pick):g}"
        (line,) = ax.semilogy(alphas, errs, "o-", ms=4, label=text)
        if pick is not None:
            ax.plot([float(pick)], [errs[alphas.index(float(pick))]], "*", ms=14, color=line.get_color(), zorder=3)
    ax.set_xlabel("alpha (0: difficulty stays in X, 1: all moved into W)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def threshold_plot(sweep: dict, threshold: float):
    """LLM.int8() at one threshold: channel maxima with the kept columns (left); error and float share (right).

    `sweep` is what `qlearn.widgets.outliers.threshold_sweep` returns; `threshold` one of its thresholds.
    Shapes: sweep["absmax"] (in,) -> a Figure with two Axes.
    """
    if not isinstance(sweep, dict) or "thresholds" not in sweep:
        raise TypeError("sweep must be the dict returned by threshold_sweep(X, W, thresholds)")
    ts = list(sweep["thresholds"])
    if threshold not in ts:
        raise ValueError(f"threshold must be one of the swept thresholds {ts}, got {threshold!r}")
    k = ts.index(threshold)
    absmax = sweep["absmax"]
    kept = sweep["columns"][k]
    fig, (ax, ax_e) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.4, 1]})
    ax.plot(absmax.numpy(), lw=0.7, color="tab:blue", label="max|X_j| (int8)")
    ax.plot(kept.numpy(), absmax[kept].numpy(), "o", ms=4, color="tab:red", label=f"kept in float ({len(kept)})")
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    ax.set_xlabel("input channel j")
    ax.set_ylabel("max over tokens |X_tj|")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"threshold {threshold:g}: {len(kept)} of {absmax.numel()} columns in float", fontsize=9)
    ax_e.semilogy(ts, sweep["error"], "o-", ms=3, color="tab:red", label="LLM.int8() error")
    ax_e.axhline(sweep["plain_error"], color="tab:gray", ls="--", lw=0.8, label="plain int8 (no float columns)")
    ax_e.plot([threshold], [sweep["error"][k]], "*", ms=13, color="k", zorder=3)
    ax_e.set_xscale("log")
    ax_e.set_xlabel("threshold")
    ax_e.set_ylabel("relative error of Y")
    share = ax_e.twinx()
    share.plot(ts, [100 * f for f in sweep["float_share"]], "s-", ms=3, color="tab:green", label="% of matmul in float")
    share.set_ylabel("% of multiply-adds in float", color="tab:green")
    share.tick_params(axis="y", colors="tab:green")
    lines = ax_e.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    ax_e.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                ncol=1, frameon=False)
    fig.tight_layout()
    return fig
