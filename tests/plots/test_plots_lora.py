"""The LoRA figures: what they draw, and clear errors for inputs they cannot draw."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from qlearn.methods.finetune_memory import RECIPES, finetune_bytes
from qlearn.plots.lora import loss_curves, low_rank_update, memory_bars, rank_sweep


def test_memory_bars_one_panel_per_model_one_bar_per_recipe():
    tables = {name: {r: finetune_bytes(10**6, 8 * 10**5, 10**4, r) for r in RECIPES} for name in ("a", "b")}
    fig = memory_bars(tables, units={"b": "MB"})
    assert len(fig.axes) == 2 and "MB" in fig.axes[1].get_ylabel()
    heights = sum(p.get_height() for p in fig.axes[0].patches[:len(RECIPES)])  # the "base" segments
    assert heights == pytest.approx(sum(tables["a"][r]["base"] for r in RECIPES) / 1e9)
    plt.close(fig)
    with pytest.raises(ValueError, match="units"):
        memory_bars(tables, units={"a": "KiB"})


def test_low_rank_update_draws_the_product():
    B, A = torch.randn(6, 2), torch.randn(2, 5)
    fig = low_rank_update(B, A, scaling=2.0)
    product = fig.axes[2].images[0].get_array()
    assert torch.allclose(torch.as_tensor(product.data), 2.0 * B @ A)
    plt.close(fig)
    with pytest.raises(ValueError, match="same r"):
        low_rank_update(torch.randn(6, 2), torch.randn(3, 5))


def test_loss_curves_and_rank_sweep():
    fig = loss_curves({"a": [3.0, 2.0], "b": [3.0, 1.5]})
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)
    fig = rank_sweep([1, 2], [10, 20], [40, 80], [2.0, 1.5], r=2, total_params=1000)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(TypeError):
        loss_curves({})
    with pytest.raises(ValueError):
        rank_sweep([1, 2], [10], [40, 80], [2.0, 1.5], r=2, total_params=1000)
