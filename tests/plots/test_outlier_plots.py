"""Notebook 09's plots: what each one draws is read back from the Figure."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qlearn import plots  # noqa: E402
from qlearn.methods.smoothquant import smoothing_factors  # noqa: E402


def _outlier_x(tokens=32, channels=64, dims=(3, 40), seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, channels, generator=g)
    X[:, list(dims)] *= 30.0
    return X


def test_heatmap_shows_abs_values_and_labels_the_dims():
    X = _outlier_x()
    fig = plots.activation_heatmap(X, dims=[3, 40])
    image = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(np.asarray(image), X.abs().numpy())
    assert {t.get_text() for t in fig.axes[0].texts} == {"3", "40"}
    plt.close(fig)


def test_channel_max_plot_marks_dims_only_where_they_reach_the_threshold():
    X = _outlier_x()
    absmax = {"block 0": X.abs().amax(0), "block 1": X.abs().amax(0).clone()}
    absmax["block 1"][40] = 0.5  # dim 40 is small in block 1
    fig = plots.channel_max_plot(absmax, dims=[3, 40], threshold=6.0)
    assert len(fig.axes) == 2
    marked = [ax.lines[1].get_xdata().tolist() for ax in fig.axes]
    assert marked == [[3, 40], [3]]
    assert [ln.get_ydata()[0] for ln in fig.axes[0].lines if ln.get_linestyle() == "--"] == [6.0]
    plt.close(fig)


def test_migration_plot_draws_the_maxima_before_and_after():
    X = _outlier_x()
    W = 0.1 * torch.randn(16, 64)
    a, w = X.abs().amax(0), W.abs().amax(0)
    s = smoothing_factors(a, W, 0.5)
    fig = plots.migration_plot(a, w, s, alpha=0.5)
    top, bottom = fig.axes
    assert np.allclose(top.lines[0].get_ydata(), a.numpy()) and np.allclose(top.lines[1].get_ydata(), w.numpy())
    # alpha = 0.5: X / s and W * s end with the same per-channel maxima
    assert np.allclose(bottom.lines[0].get_ydata(), bottom.lines[1].get_ydata(), rtol=1e-5)
    plt.close(fig)


def test_alpha_sweep_marks_each_lines_own_choice():
    alphas = [0.0, 0.5, 1.0]
    errors = {"a": [0.3, 0.1, 0.2], "b": [0.05, 0.04, 0.01]}
    fig = plots.alpha_sweep_plot(alphas, errors, chosen={"a": 0.5, "b": 1.0})
    stars = [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in fig.axes[0].lines if ln.get_marker() == "*"]
    assert stars == [(0.5, 0.1), (1.0, 0.01)]
    assert fig.axes[0].get_yscale() == "log"
    plt.close(fig)


@pytest.mark.parametrize("call, err", [
    (lambda: plots.activation_heatmap(torch.ones(4)), ValueError),
    (lambda: plots.activation_heatmap(torch.ones(4, 4), dims=[9]), ValueError),
    (lambda: plots.channel_max_plot({}), TypeError),
    (lambda: plots.channel_max_plot({"a": torch.ones(4), "b": torch.ones(5)}), ValueError),
    (lambda: plots.migration_plot(torch.ones(4), torch.ones(4), -torch.ones(4)), ValueError),
    (lambda: plots.migration_plot(torch.ones(4), torch.ones(3), torch.ones(4)), ValueError),
    (lambda: plots.alpha_sweep_plot([0, 1], {"a": [0.1]}), ValueError),
    (lambda: plots.alpha_sweep_plot([0, 1], {"a": [0.1, float("nan")]}), ValueError),
    (lambda: plots.alpha_sweep_plot([0, 1], {"a": [0.1, 0.2]}, chosen=0.5), ValueError),
    (lambda: plots.threshold_plot({"thresholds": [1.0]}, 2.0), ValueError),
    (lambda: plots.threshold_plot([1.0], 1.0), TypeError),
], ids=["heatmap-1d", "heatmap-dim-out-of-range", "channel-max-empty", "channel-max-lengths", "migration-negative-s",
        "migration-shapes", "sweep-length", "sweep-nan", "sweep-chosen-not-swept", "threshold-not-swept",
        "threshold-not-a-sweep"])
def test_bad_inputs(call, err):
    with pytest.raises(err):
        call()
    plt.close("all")


def test_channel_max_plot_on_a_log_axis_marks_every_channel_over_the_threshold_without_dims():
    X = _outlier_x()
    fig = plots.channel_max_plot({"block 0": X.abs().amax(0)}, threshold=6.0, log_y=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    over = torch.nonzero(X.abs().amax(0) >= 6.0).flatten().tolist()
    assert over and ax.lines[1].get_xdata().tolist() == over
    plt.close(fig)


def test_heatmap_labels_its_dims_at_a_readable_size():
    fig = plots.activation_heatmap(_outlier_x(), dims=[3, 40])
    assert all(t.get_fontsize() >= 9 for t in fig.axes[0].texts)
    plt.close(fig)
