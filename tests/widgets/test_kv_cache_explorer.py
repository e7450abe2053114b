"""The KV-cache explorer: each control recomputes the layer's attention error and bytes, as kv_eval says."""

import matplotlib
import pytest
import torch

from qlearn.methods.kv_eval import attention_error
from qlearn.plots.kv_cache import kv_channel_plot, kv_error_plot
from qlearn.widgets.kv_cache import kv_cache_explorer

matplotlib.use("Agg")


def qkv():
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 64, 32, generator=g)
    k[..., 5] += 15.0  # an outlier channel, as real keys have
    return torch.randn(4, 64, 32, generator=g), k, torch.randn(2, 64, 32, generator=g)


def test_controls_redraw_with_the_library_numbers():
    q, k, v = qkv()
    ex = kv_cache_explorer(q, k, v, bits=2, key_granularity="channel", residual_length=32)
    assert ex.calls == 1 and ex.figure is not None
    want = attention_error(q, k, v, 2, "channel", "token", 32, 32)
    assert ex.last["nbytes"] == want["nbytes"] and ex.last["output_error"] == want["output_error"]
    channel = ex.last["output_error"]
    ex.controls["keys"].value = "token"
    assert ex.calls == 2 and ex.last["output_error"] > channel  # per-token groups stretch over the outlier channel
    ex.controls["bits"].value = 8
    assert ex.last["output_error"] < channel and ex.last["ratio"] > 0.5
    ex.controls["window"].value = 0
    assert ex.calls == 4 and ex.last["residual_length"] == 0


def test_bad_settings_are_refused():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="residual_length"):
        kv_cache_explorer(q, k, v, residual_length=96)
    with pytest.raises(ValueError, match="bits"):
        kv_cache_explorer(q, k, v, bits=3)


def test_plots_draw_and_refuse_other_input():
    q, k, v = qkv()
    fig = kv_channel_plot({0: {"k_pre": k, "k": k, "v": v}}, title="toy")
    assert len(fig.axes) == 3
    fig = kv_error_plot(attention_error(q, k, v, bits=4), float16_bytes=2 * k.numel() * 2)
    assert len(fig.axes) == 2
    with pytest.raises(TypeError):
        kv_channel_plot({0: {"k": k}})
    with pytest.raises(ValueError):
        kv_error_plot(attention_error(q, k, v, bits=4), float16_bytes=0)
