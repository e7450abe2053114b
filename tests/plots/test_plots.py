"""qlearn.plots: each function returns a Figure that draws exactly the numbers qlearn computes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qlearn import PerChannel, PerGroup, PerTensor, choose_qparams, dequantize, quantize  # noqa: E402
from qlearn.data.tensors import rows_with_ranges  # noqa: E402
from qlearn.plots import channel_ranges, error_histogram, quantization_heatmaps, sqnr_vs_bits, sqnr_vs_effective_bits  # noqa: E402
from qlearn.teaching.sweep import pareto_sweep, sqnr_sweep  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _x(shape=(6, 8), seed=0):
    torch.manual_seed(seed)
    return torch.randn(shape)


def test_error_histogram_counts_every_element():
    x = _x((16, 32))
    qp = choose_qparams(x, 3)
    fig = error_histogram(x, dequantize(quantize(x, qp), qp), bins=20)
    assert isinstance(fig, Figure) and len(fig.axes[0].patches) == 20
    assert sum(p.get_height() for p in fig.axes[0].patches) == x.numel()


@pytest.mark.parametrize("granularity", [PerTensor(), PerChannel(0), PerGroup(4)], ids=str)
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_heatmaps_show_x_codes_reconstruction_and_error(granularity, symmetric):
    x = _x()
    qp = choose_qparams(x, 4, symmetric, granularity)
    q = quantize(x, qp)
    x_hat = dequantize(q, qp)
    fig = quantization_heatmaps(x, qp)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4
    expected = [x, q.float(), x_hat, (x - x_hat).abs()]
    for ax, t in zip(panels, expected):
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), t.numpy(), rtol=1e-6)
    assert len(panels[1].texts) == x.numel()  # every code is written in its cell
    assert {int(t.get_text()) for t in panels[1].texts} == set(q.flatten().tolist())


def test_heatmaps_skip_annotations_on_larger_tensors():
    x = _x((16, 16))
    fig = quantization_heatmaps(x, choose_qparams(x, 8))
    assert all(not ax.texts for ax in fig.axes if ax.images)


def test_sqnr_vs_bits_draws_the_sweep():
    x = _x((32, 64))
    sweep = sqnr_sweep(x, {"symmetric": {"symmetric": True}, "asymmetric": {}}, bits=range(2, 9))
    fig = sqnr_vs_bits(sweep)
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    for label, points in sweep.items():
        np.testing.assert_allclose(lines[label].get_ydata(), [points[b] for b in range(2, 9)])
    assert "+6.02 dB per bit" in lines


def test_sqnr_vs_effective_bits_marks_the_pareto_front():
    points = pareto_sweep(rows_with_ranges(16, 128), bits=(2, 4), group_sizes=(32, 64))
    fig = sqnr_vs_effective_bits(points)
    ax = fig.axes[0]
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert sorted(xs.tolist()) == pytest.approx(sorted(p["effective_bits"] for p in points))
    front = [line for line in ax.lines if line.get_label() == "Pareto front"][0]
    assert len(front.get_xdata()) == sum(p["pareto"] for p in points)


@pytest.mark.parametrize("sort", [False, True], ids=["index", "sorted"])
def test_channel_ranges_band_and_tensor_range(sort):
    W = rows_with_ranges(8, 32)
    fig = channel_ranges(W, sort=sort)
    ys = sorted(float(line.get_ydata()[0]) for line in fig.axes[0].lines)
    assert ys == pytest.approx([float(W.min()), float(W.max())])
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(float(W.max())) and band.min() == pytest.approx(float(W.min()))


@pytest.mark.parametrize("call, err, match", [
    (lambda: error_histogram(_x(), _x((3, 3))), ValueError, "same shape"),
    (lambda: error_histogram(_x(), _x(), bins=0), ValueError, "bins"),
    (lambda: quantization_heatmaps(_x((40, 4)), choose_qparams(_x((40, 4)))), ValueError, "small 2-D"),
    (lambda: quantization_heatmaps(_x(), "qp"), TypeError, "QParams"),
    (lambda: quantization_heatmaps(_x(), choose_qparams(_x((3, 3)), granularity=PerChannel(0))), ValueError,
     "do not fit"),
    (lambda: sqnr_vs_bits({}), TypeError, "sweep"),
    (lambda: sqnr_vs_effective_bits([{"bits": 2}]), TypeError, "pareto_sweep"),
    (lambda: channel_ranges(_x((4,))), ValueError, "2-D"),
    (lambda: channel_ranges(_x(), sort="yes"), TypeError, "sort"),
], ids=["shape-mismatch", "zero-bins", "too-big", "not-qparams", "qparams-other-shape", "empty-sweep",
        "bad-points", "1d-weight", "string-sort"])
def test_bad_inputs(call, err, match):
    with pytest.raises(err, match=match):
        call()
