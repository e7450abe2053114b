"""The GPTQ explorer of notebook 08: damp, group size and act_order on a small layer, scored on held-out tokens."""

from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from ..core.validation import check_bits, check_float_tensor
from ..methods import gptq, rtn
from ..methods.awq import output_mse
from ._base import Explorer

__all__ = ["DAMPS", "gptq_explorer", "gptq_sweep", "gptq_sweep_plot"]

DAMPS = (0.0001, 0.001, 0.01, 0.1, 1.0)


def gptq_sweep(W: torch.Tensor, X: torch.Tensor, X_test: torch.Tensor, bits: int, group_size: int | None,
               act_order: bool, damps=DAMPS) -> dict:
    """GPTQ's and RTN's held-out output MSE for every damp, at one group size and act_order.

    Shapes: W (out, in); X (calibration tokens, in); X_test (held-out tokens, in).
    Returns {"damps": tuple, "gptq": tuple of floats, "rtn": float}.
    """
    R_hat = rtn.quantize_weight(W, bits=bits, group_size=group_size).dequantize()
    errors = tuple(output_mse(X_test, W, gptq.quantize_weight(W, X, bits=bits, group_size=group_size,
                                                            act_order=act_order, damp=d).dequantize())
                   for d in damps)
    return {"damps": tuple(damps), "gptq": errors, "rtn": output_mse(X_test, W, R_hat)}


def gptq_sweep_plot(sweep: dict, damp: float, title: str):
    """GPTQ's held-out output error over damp (log x), RTN's as a dashed line, the chosen damp marked."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(sweep["damps"], sweep["gptq"], "o-", label="GPTQ")
    ax.axhline(sweep["rtn"], color="tab:red", ls="--", label="RTN")
    k = sweep["damps"].index(damp)
    ax.plot([damp], [sweep["gptq"][k]], "*", ms=15, color="black", label=f"damp = {damp:g}")
    ax.set_xscale("log")
    ax.set_xlabel("damp (fraction of mean diag H added to the diagonal)")
    ax.set_ylabel("held-out output MSE")
    ax.set_ylim(0, max(max(sweep["gptq"]), sweep["rtn"]) * 1.15)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def gptq_explorer(W: torch.Tensor, X: torch.Tensor, X_test: torch.Tensor, bits: int = 3, damp: float = 0.01,
                  group_size: int | None = None, act_order: bool = False, group_sizes=(None, 64, 32)) -> Explorer:
    """A widget around `gptq_sweep`: a damp slider, a group-size dropdown and an act_order toggle.

    Each (group size, act_order) pair is swept over all damps once and cached, so moving the damp
    slider only redraws. Keep the layer small (e.g. 64 x 128, a few hundred tokens): a sweep takes
    well under a second there.
    Shapes: W (out, in); X, X_test (tokens, in); every group size in `group_sizes` divides `in` (None: per row).
    """
    for name, t in (("W", W), ("X", X), ("X_test", X_test)):
        check_float_tensor(t, name)
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if X.shape[1] != W.shape[1] or X_test.shape[1] != W.shape[1]:
        raise ValueError(f"X and X_test must have W's {W.shape[1]} input columns, got {X.shape[1]} and "
                         f"{X_test.shape[1]}")
    check_bits(bits)
    sizes = list(group_sizes)
    bad = [g for g in sizes if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 1
                                                 or W.shape[1] % g)]
    if not sizes or bad:
        raise ValueError(f"group_sizes must be None or positive ints that divide {W.shape[1]}, got {bad or sizes}")
    if group_size not in sizes:
        raise ValueError(f"group_size must be one of {sizes}, got {group_size!r}")
    if damp not in DAMPS:
        raise ValueError(f"damp must be one of {DAMPS}, got {damp!r}")
    if not isinstance(act_order, bool):
        raise TypeError(f"act_order must be True or False, got {act_order!r}")
    W, X, X_test = W.detach().float(), X.detach().float(), X_test.detach().float()

    damp_w = w.SelectionSlider(options=list(DAMPS), value=damp, description="damp", continuous_update=False)
    group_w = w.Dropdown(options=[("per row" if g is None else str(g), g) for g in sizes], value=group_size,
                         description="group size")
    order_w = w.Checkbox(value=act_order, description="act_order")
    out = w.Output()
    explorer = Explorer(w.VBox([w.HBox([damp_w, group_w, order_w]), out]),
                        {"damp": damp_w, "group_size": group_w, "act_order": order_w}, out, title="GPTQ explorer")
    cache: dict = {}

    def redraw(*_):
        d, g, a = damp_w.value, group_w.value, bool(order_w.value)
        if (g, a) not in cache:
            cache[(g, a)] = gptq_sweep(W, X, X_test, bits, g, a)
        sweep = cache[(g, a)]
        err = sweep["gptq"][sweep["damps"].index(d)]
        explorer.last = {"damp": d, "group_size": g, "act_order": a, "gptq_mse": err, "rtn_mse": sweep["rtn"],
                         "ratio": err / sweep["rtn"]}
        title = (f"{bits} bits, {'per row' if g is None else f'groups of {g}'}, act_order={a}: "
                 f"GPTQ / RTN = {err / sweep['rtn']:.2f}")
        explorer.show(gptq_sweep_plot(sweep, d, title))
        explorer.calls += 1

    for control in (damp_w, group_w, order_w):
        control.observe(redraw, names="value")
    redraw()
    return explorer
