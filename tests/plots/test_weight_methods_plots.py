"""Notebook 08's figures: each draws what it says, from the numbers it is given, and rejects bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qlearn.data.tensors import correlated_inputs  # noqa: E402
from qlearn.methods import awq, hqq, nf4, rtn  # noqa: E402
from qlearn.plots import awq_plot, hqq_error_plot, nf4_codebook_plot, obs_plot, pareto_plot  # noqa: E402
from qlearn.plots.weight_methods import obs_step  # noqa: E402


def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 32, generator=g), correlated_inputs(256, 32, rho=0.9, seed=seed)


def test_nf4_codebook_draws_the_16_codes():
    fig = nf4_codebook_plot(nf4.NF4_CODE, weights=torch.randn(1000).clamp(-1, 1))
    ax = fig.axes[0]
    codes = [c for c in ax.collections if c.get_label() == "NF4 codes"][0]
    xs = sorted(float(seg[0][0]) for seg in codes.get_segments())
    assert xs == pytest.approx(nf4.NF4_CODE.tolist())
    plt.close(fig)
    with pytest.raises(ValueError, match="1-D"):
        nf4_codebook_plot(nf4.NF4_CODE.reshape(4, 4))


def test_hqq_plot_draws_each_history_and_baseline():
    W = torch.distributions.StudentT(3.0).sample((16, 128))
    qw = hqq.quantize_weight(W, bits=3, group_size=64, early_stop=False, iters=5)
    base = float((rtn.quantize_weight(W, bits=3, group_size=64).dequantize() - W).abs().mean())
    fig = hqq_error_plot({"3 bits": qw.history}, {"3 bits": base})
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == pytest.approx(list(qw.history))
    assert ax.lines[1].get_ydata()[0] == pytest.approx(base)
    plt.close(fig)
    with pytest.raises(TypeError):
        hqq_error_plot([1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        hqq_error_plot({"a": []})


@pytest.mark.parametrize("column", [0, 5], ids=["first", "middle"])
def test_obs_step_compensates_and_lowers_output_error(column):
    W, X = _toy()
    rounded, compensated = obs_step(W, X, bits=2, column=column)
    assert torch.equal(rounded[:, column], compensated[:, column])
    assert torch.equal(compensated[:, :column], W[:, :column])  # earlier columns untouched
    assert not torch.equal(compensated[:, column + 1:], W[:, column + 1:])
    err = [float((X @ (W - V).T).square().mean()) for V in (rounded, compensated)]
    assert err[1] < err[0]
    fig = obs_plot(W, X, bits=2, column=column)
    assert [p.get_height() for p in fig.axes[1].patches] == pytest.approx(err)
    plt.close(fig)
    with pytest.raises(ValueError, match="column"):
        obs_step(W, X, bits=2, column=32)


def test_awq_plot_marks_the_largest_channels_and_best_alpha():
    W, _ = _toy()
    X = torch.randn(128, 32)
    X[:, [3, 17]] *= 30
    qw = awq.quantize_weight(W, X, bits=3, group_size=None, n_grid=10, clip=False)
    fig = awq_plot(X.abs().mean(0), qw.alphas, qw.losses, top=2)
    left, right = fig.axes
    assert sorted(int(x) for x in left.lines[0].get_xdata()) == [3, 17]
    assert right.lines[1].get_xdata()[0] == pytest.approx(qw.alpha)
    plt.close(fig)
    with pytest.raises(ValueError, match="one length"):
        awq_plot(X.abs().mean(0), [0.0, 0.5], [1.0])


@pytest.mark.parametrize("higher", [True, False], ids=["cosine", "perplexity"])
def test_pareto_frontier_keeps_only_undominated_points(higher):
    sign = 1 if higher else -1
    points = {"a": (2.0, sign * 0.5), "b": (3.0, sign * 0.4), "c": (4.0, sign * 0.9), "d": (4.5, sign * 0.95)}
    fig = pareto_plot(points, higher_is_better=higher)
    step = [line for line in fig.axes[0].lines if line.get_label() == "Pareto frontier"][0]
    assert list(step.get_xdata()) == [2.0, 4.0, 4.5]  # b is dominated by a
    plt.close(fig)
    with pytest.raises(TypeError):
        pareto_plot({})


def test_pareto_labels_overlap_neither_each_other_nor_their_points_and_stay_inside():
    """A dense cluster (as at 4 bits in notebook 08) still gets one readable label per point."""
    from matplotlib.text import Text

    points = {f"M{i} {b}b": (4.3 + 0.01 * (i % 3), 0.95 + 0.002 * i) for i in range(8) for b in (4,)}
    points.update({"far 2b": (2.6, 0.4)})
    fig = pareto_plot(points)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    frame = ax.get_window_extent(renderer)
    assert sorted(t.get_text() for t in ax.texts) == sorted(points)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_hqq_plot_gives_each_width_its_own_y_axis():
    fig = hqq_error_plot({"4 bits": [0.005, 0.0047], "2 bits": [0.024, 0.023]}, {"4 bits": 0.0049, "2 bits": 0.0249})
    four, two = fig.axes
    assert four.get_ylim()[1] < 0.006 and two.get_ylim()[0] > 0.02  # each curve fills its own panel
    plt.close(fig)
