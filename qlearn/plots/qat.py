"""Pictures for quantization-aware training: the STE, observer ranges, accuracy against bits."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core import metrics
from ..core.primitives import fake_quantize, qrange
from ..core.validation import check_bits, check_float_tensor
from ..training.observers import make_observer

__all__ = ["accuracy_vs_bits_plot", "observer_ranges", "observer_ranges_plot", "ste_plot"]


def ste_plot(bits: int = 2, scale: float = 1.0):
    """Left: x and fake_quantize(x) (a staircase). Right: d/dx of rounding (0 almost everywhere,
    undefined at the steps) against the straight-through estimate (1 inside the range, 0 outside),
    the latter computed by autograd through `qlearn.fake_quantize`.

    Shapes: none (a 1-D sweep of 801 points) -> a Figure with two Axes.
    """
    check_bits(bits)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    from ..training.observers import qparams_from_range

    qmin, qmax = qrange(bits)
    qp = qparams_from_range(torch.tensor([qmin * scale]), torch.tensor([qmax * scale]), bits, symmetric=False)
    x = torch.linspace((qmin - 1.5) * scale, (qmax + 1.5) * scale, 801, requires_grad=True)  # (801,)
    x_hat = fake_quantize(x, qparams=qp)
    x_hat.sum().backward()
    xs, steps = x.detach().numpy(), (torch.arange(qmin, qmax) + 0.5) * scale  # rounding jumps
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.plot(xs, xs, "--", color="gray", label="x (identity)")
    a1.plot(xs, x_hat.detach().numpy(), color="tab:blue", label="fake_quantize(x)")
    a1.set_xlabel("x")
    a1.set_title(f"forward: {bits}-bit quantize -> dequantize")
    a1.legend(loc="upper left", fontsize=8)  # the empty corner: the staircase runs lower left to upper right
    a2.plot(xs, torch.zeros_like(x).detach().numpy(), color="tab:red", label="true gradient of round (0)")
    a2.vlines(steps.numpy(), 0, 1.15, colors="tab:red", linestyles=":", label="jumps: gradient undefined")
    a2.plot(xs, x.grad.numpy(), color="tab:green", lw=2, label="STE gradient (autograd)")
    a2.set_ylim(-0.1, 1.3)
    a2.set_xlabel("x")
    a2.set_title("backward: d fake_quantize(x) / dx")
    a2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)  # below the axes, off the data
    fig.tight_layout()
    return fig


def observer_ranges(x: torch.Tensor, bits: int = 4, symmetric: bool = False,
                    names=("minmax", "percentile", "mse"), batch_size: int | None = None) -> dict[str, dict]:
    """For each observer name: its range (lo, hi) on `x` and the MSE of fake-quantizing `x` with it.

    `batch_size` None shows x to each observer as one batch; an int feeds x.split(batch_size) (along dim 0)
    one batch after the other, as calibration does. Only the moving average depends on it.
    Shapes: x (n, ...) -> {name: {"lo", "hi", "mse"}}.
    """
    check_float_tensor(x)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None (one batch), got {batch_size!r}")
    batches = [x] if batch_size is None else x.split(batch_size)  # each (<= batch_size, ...)
    out = {}
    for name in names:
        obs = make_observer(name, bits, symmetric)
        for batch in batches:
            obs.observe(batch)
        (lo, hi), qp = obs.range(), obs.qparams()
        out[name] = {"lo": float(lo), "hi": float(hi), "mse": metrics.mse(x, fake_quantize(x, qparams=qp))}
    return out


def observer_ranges_plot(x: torch.Tensor, bits: int = 4, symmetric: bool = False,
                         names=("minmax", "percentile", "mse"), title: str = "tensor", ranges: dict | None = None,
                         batch_size: int | None = None):
    """Histogram of x (log counts) with each observer's [lo, hi] as vertical lines, MSE in the legend.

    `ranges` (optional) is what `observer_ranges(x, bits, symmetric, names, batch_size)` returned, to skip
    recomputing it. Shapes: x (...) (flattened) -> a Figure with one Axes.
    """
    ranges = observer_ranges(x, bits, symmetric, names, batch_size) if ranges is None else ranges
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.hist(x.detach().float().flatten().cpu().numpy(), bins=200, color="lightgray", log=True)
    for (name, r), color in zip(ranges.items(), ("tab:red", "tab:blue", "tab:green", "tab:purple")):
        ax.axvline(r["lo"], color=color, ls="--")
        ax.axvline(r["hi"], color=color, ls="--", label=f"{name}: MSE {r['mse']:.3g}")
    ax.set_xlabel("value")
    ax.set_ylabel("count (log)")
    ax.set_title(f"{title}: {bits}-bit ranges chosen by each observer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_vs_bits_plot(bits: list[int], curves: dict[str, list[float]], fp32: float,
                          title: str = "digits test accuracy"):
    """One line per method (e.g. PTQ, QAT) of accuracy against bit width, fp32 as a dashed line.

    Shapes: bits (k,), each curve (k,) in percent -> a Figure with one Axes.
    """
    if not isinstance(bits, (list, tuple)) or not isinstance(curves, dict) or not isinstance(fp32, (int, float)):
        raise TypeError("bits must be a list of ints, curves a dict {label: [accuracy per bit width]}, fp32 a number")
    if not curves or any(len(v) != len(bits) for v in curves.values()):
        raise ValueError("curves must be a non-empty dict of lists, each as long as bits")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    pos = list(range(len(bits)))  # evenly spaced, in the order given
    for (label, acc), marker in zip(curves.items(), "osd^v"):
        ax.plot(pos, acc, marker + "-", label=label)
    ax.axhline(fp32, color="gray", ls="--", label=f"fp32 ({fp32:.1f} %)")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(pos, [str(b) for b in bits])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
