"""The LLM.int8() threshold explorer: slide the threshold, see the columns kept in float and what they buy.

Every threshold is computed once when the explorer is built (`threshold_sweep`), so moving the slider
only redraws the figure.
"""

from __future__ import annotations

import math

import ipywidgets as w
import torch

from ..methods.llm_int8 import Int8Weight, check_threshold, int8_mixed_matmul
from ..plots.outliers import threshold_plot
from ._base import Explorer

__all__ = ["THRESHOLDS", "threshold_explorer", "threshold_sweep"]

THRESHOLDS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0)


def _relative_error(Y_hat: torch.Tensor, Y: torch.Tensor) -> float:
    return float((Y_hat - Y).norm() / Y.norm().clamp(min=torch.finfo(torch.float32).tiny))


@torch.no_grad()
def threshold_sweep(X: torch.Tensor, W: torch.Tensor, thresholds=THRESHOLDS) -> dict:
    """LLM.int8() of X W^T at each threshold: the float columns, the error and the share done in float.

    error       = ||Y_hat - X W^T|| / ||X W^T||  (Frobenius), Y_hat = int8_mixed_matmul(X, W8, threshold)
                  with W8 = Int8Weight.from_float(W): the outlier columns multiply dequantized weight
                  columns, as in the Int8MixedLinear layer (so the error never drops below W's own)
    float_share = k / in: the fraction of the multiply-adds that run in float (k columns kept)
    plain_error = the error with no float columns (threshold None: plain vector-wise int8)

    Shapes: X (tokens, in), W (out, in) -> "absmax" (in,), "columns" [(k,) int64 per threshold], lists per threshold.
    """
    if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__iter__"):
        raise TypeError(f"thresholds must be a list of positive numbers, got {thresholds!r}")
    ts = [check_threshold(t) for t in thresholds]
    if not ts or None in ts or sorted(set(ts)) != ts:
        raise ValueError(f"thresholds must be a non-empty, increasing list of distinct numbers > 0, got {thresholds!r}")
    W8 = Int8Weight.from_float(W)  # also checks W; quantized once, as a stored int8 layer is
    Y_plain = int8_mixed_matmul(X, W8, None)  # also checks X against W
    X32 = X.detach().float()
    Y = X32 @ W.detach().float().t()  # (tokens, out)
    out = {"thresholds": ts, "absmax": X32.abs().amax(0).cpu(), "columns": [], "n_kept": [], "float_share": [],
           "error": [], "plain_error": _relative_error(Y_plain, Y)}
    for t in ts:
        Y_hat, cols = int8_mixed_matmul(X32, W8, t, return_outliers=True)  # float columns: W8 dequantized
        out["columns"].append(cols.cpu())
        out["n_kept"].append(int(cols.numel()))
        out["float_share"].append(cols.numel() / X.shape[1])
        out["error"].append(_relative_error(Y_hat, Y))
    return out


def threshold_explorer(X: torch.Tensor, W: torch.Tensor, threshold: float = 6.0, thresholds=THRESHOLDS,
                       title: str = "layer") -> Explorer:
    """A threshold slider over `thresholds` that redraws `threshold_plot` for X W^T; numbers in `explorer.last`."""
    sweep = threshold_sweep(X, W, thresholds)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or float(threshold) not in sweep["thresholds"]:
        raise ValueError(f"threshold must be one of {sweep['thresholds']}, got {threshold!r}")
    t_w = w.SelectionSlider(options=[(f"{t:g}", t) for t in sweep["thresholds"]], value=float(threshold),
                            description="threshold", continuous_update=False)
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([t_w, readout, out]), {"threshold": t_w}, out)
    explorer.sweep = sweep

    def redraw(*_):
        t = t_w.value
        k = sweep["thresholds"].index(t)
        explorer.last = {"threshold": t, "columns": sweep["columns"][k].tolist(), "n_kept": sweep["n_kept"][k],
                         "float_share": sweep["float_share"][k], "error": sweep["error"][k],
                         "plain_error": sweep["plain_error"]}
        readout.value = (f"<b>{title}, threshold {t:g}</b>: {sweep['n_kept'][k]} columns in float "
                         f"({100 * sweep['float_share'][k]:.1f} % of the multiply-adds); relative error "
                         f"{sweep['error'][k]:.2e} (plain int8: {sweep['plain_error']:.2e})")
        explorer.show(threshold_plot(sweep, t))
        explorer.calls += 1

    t_w.observe(redraw, names="value")
    redraw()
    return explorer
