"""The figures a notebook shows are readable: legends off the data, numbers large enough, shared axes where
a comparison needs them. Checked on the drawn figure (Agg), in display coordinates."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qlearn import choose_qparams, dequantize, quantize  # noqa: E402
from qlearn.plots import error_histogram, error_histograms, quantization_heatmaps  # noqa: E402
from qlearn.plots.compression import soft_targets  # noqa: E402
from qlearn.plots.inference import plot_group_reconstruction  # noqa: E402
from qlearn.plots.qat import ste_plot  # noqa: E402


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _legend_is_outside_the_axes(fig, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return not _boxes_overlap(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))


@pytest.fixture
def W():
    return torch.randn(8, 128, generator=torch.Generator().manual_seed(0))


def test_group_plot_legend_is_off_the_data(W):
    fig = plot_group_reconstruction(W, bits=4, group_size=32)
    assert _legend_is_outside_the_axes(fig, fig.axes[0])
    plt.close(fig)


def test_soft_target_legend_is_off_the_bars():
    fig = soft_targets(torch.tensor([9.0, 0.0, 8.9, 1.0, 2.0]), [1, 4, 10])
    assert _legend_is_outside_the_axes(fig, fig.axes[0])
    plt.close(fig)


def test_ste_gradient_legend_is_off_the_curves():
    fig = ste_plot(bits=2, scale=0.5)
    assert _legend_is_outside_the_axes(fig, fig.axes[1])
    plt.close(fig)


def test_error_histogram_text_box_sits_above_the_bars(W):
    qp = choose_qparams(W, 8)
    fig = error_histogram(W, dequantize(quantize(W, qp), qp))
    ax = fig.axes[0]
    tallest = max(p.get_height() for p in ax.patches)
    box_bottom_in_data = ax.transData.inverted().transform(
        ax.transAxes.transform((0.0, 0.96)))[1] - 0.2 * ax.get_ylim()[1]  # the two-line box is < 20 % of the axes
    assert tallest < box_bottom_in_data
    plt.close(fig)


def test_two_error_histograms_share_their_x_axis_and_bins():
    x = torch.rand(64, 64)
    qp_s, qp_a = choose_qparams(x, 4, symmetric=True), choose_qparams(x, 4, symmetric=False)
    fig = error_histograms(x, {"symmetric": dequantize(quantize(x, qp_s), qp_s),
                               "asymmetric": dequantize(quantize(x, qp_a), qp_a)})
    top, bottom = fig.axes
    assert top.get_xlim() == bottom.get_xlim() and top.get_shared_x_axes().joined(top, bottom)
    widths = {round(p.get_width(), 7) for ax in fig.axes for p in ax.patches}  # float32 edges
    assert len(widths) == 1  # the same bins in both panels
    assert [ax.get_title() for ax in fig.axes] == ["symmetric", "asymmetric"]
    assert sum(p.get_height() for p in top.patches) == x.numel()
    plt.close(fig)
    with pytest.raises(TypeError, match="dict"):
        error_histograms(x, [x])


@pytest.mark.parametrize("shape", [(4, 6), (6, 8)], ids=["4x6", "6x8"])
def test_heatmaps_are_two_rows_with_readable_numbers(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    fig = quantization_heatmaps(x, choose_qparams(x, 3, symmetric=True))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 4
    assert len({round(ax.get_position().y0, 3) for ax in panels}) == 2  # two rows of two
    assert fig.get_figwidth() <= 10.5  # fits a notebook column without being scaled down much
    fonts = {t.get_fontsize() for ax in panels for t in ax.texts}
    assert min(fonts) >= 9 and sum(len(ax.texts) for ax in panels) == 4 * x.numel()
    plt.close(fig)
