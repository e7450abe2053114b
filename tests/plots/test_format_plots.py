"""Notebook 11's plots: the format error figure reports the numbers of block_float, the grid-use histogram draws
one histogram per scale kind."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qlearn import plots  # noqa: E402
from qlearn.core.metrics import mse  # noqa: E402
from qlearn.methods import block_float  # noqa: E402


def test_format_error_figure_reports_block_float():
    W = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    fig, stats = plots.format_error_figure(W, "e3m2", 16, "float32")
    W_hat = block_float.quantize_dequantize(W, "e3m2", 16, "float32")
    assert stats["bits_per_weight"] == 6 + 32 / 16
    assert stats["relative_error"] == pytest.approx((mse(W, W_hat) / mse(W, torch.zeros_like(W))) ** 0.5)
    assert "8.000 bits per weight" in fig.axes[0].get_title()
    plt.close(fig)


def test_grid_use_histogram_one_per_label_and_refusal():
    fig = plots.grid_use_histogram({"a": torch.rand(100), "b": torch.rand(50)})
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    plt.close(fig)
    with pytest.raises(TypeError):
        plots.grid_use_histogram({})
