"""The KV-cache explorer: pick the format, the key granularity and the float window; see the attention-score error
of one layer and the bytes its cache holds (`qlearn.methods.kv_eval.attention_error`, drawn by `kv_error_plot`)."""

from __future__ import annotations

import ipywidgets as w
import torch

from ..methods.kv_cache import FORMATS
from ..methods.kv_eval import attention_error
from ..plots.kv_cache import kv_error_plot
from ._base import Explorer

__all__ = ["RESIDUALS", "kv_cache_explorer"]

RESIDUALS = (0, 32, 64, 128)


def kv_cache_explorer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bits=2, key_granularity: str = "channel",
                      residual_length: int = 32, group_size: int = 32, title: str = "layer") -> Explorer:
    """Controls for bits, key granularity (values stay per token) and residual window over one layer's q, k, v.

    Each change recomputes attention_error (a fraction of a second for 512 tokens); the numbers shown are in
    `explorer.last`. Shapes: q (heads, T, d), k and v (kv_heads, T, d).
    """
    float16_bytes = 2 * k.numel() * 2  # K and V in float16
    first = attention_error(q, k, v, bits, key_granularity, "token", group_size, residual_length)  # checks all
    if residual_length not in RESIDUALS:
        raise ValueError(f"residual_length must be one of {RESIDUALS} here, got {residual_length!r}")
    bits_w = w.Dropdown(options=[(str(b), b) for b in FORMATS], value=bits, description="bits")
    keys_w = w.ToggleButtons(options=["channel", "token"], value=key_granularity, description="keys per")
    window_w = w.SelectionSlider(options=list(RESIDUALS), value=residual_length, description="window",
                                 continuous_update=False)
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([w.HBox([bits_w, keys_w]), window_w, readout, out]),
                        {"bits": bits_w, "keys": keys_w, "window": window_w}, out, title="KV cache explorer")

    def redraw(*_, result=None):
        b, kg, r = bits_w.value, keys_w.value, window_w.value
        result = result or attention_error(q, k, v, b, kg, "token", group_size, r)
        explorer.last = {"bits": b, "key_granularity": kg, "residual_length": r, "nbytes": result["nbytes"],
                         "ratio": result["nbytes"] / float16_bytes, "output_error": result["output_error"],
                         "max_score_error": float(result["score_error"].abs().max())}
        readout.value = (f"<b>{title}: {b}-bit, keys per {kg}, values per token, window {r}</b>: attention output "
                         f"error {100 * result['output_error']:.2f} %, max |P_hat - P| "
                         f"{explorer.last['max_score_error']:.3f}; {result['nbytes']:,} bytes = "
                         f"{explorer.last['ratio']:.3f}x float16")
        explorer.show(kv_error_plot(result, float16_bytes, f"{b}-bit, keys per {kg}, window {r}:"))
        explorer.calls += 1

    for control in (bits_w, keys_w, window_w):
        control.observe(redraw, names="value")
    redraw(result=first)
    return explorer
