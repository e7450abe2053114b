"""QAT plots and the observer explorer widget (driven without a browser).

The exercise checks are in test_exercises_nb06.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from qlearn.exercises import nb06  # noqa: E402
from qlearn.plots.qat import accuracy_vs_bits_plot, observer_ranges, observer_ranges_plot, ste_plot  # noqa: E402
from qlearn.training.observers import make_observer  # noqa: E402
from qlearn.widgets.observers import observer_explorer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ste_plot_draws_the_autograd_gradient():
    fig = ste_plot(bits=2, scale=0.5)
    grad_line = [ln for ln in fig.axes[1].lines if ln.get_label().startswith("STE")][0]
    y = grad_line.get_ydata()
    assert set(y.tolist()) == {0.0, 1.0} and y[0] == 0.0 and y[len(y) // 2] == 1.0
    plt.close(fig)


def test_observer_ranges_match_the_observers():
    x = nb06.outlier_tensor()
    r = observer_ranges(x, 4, names=("minmax", "mse"))
    assert r["minmax"]["hi"] == float(x.max())
    assert r["mse"]["hi"] == pytest.approx(float(make_observer("mse", 4).observe(x).range()[1]))
    assert r["mse"]["mse"] < r["minmax"]["mse"]
    fig = observer_ranges_plot(x, 4)
    assert len(fig.axes[0].get_legend().get_texts()) == 3
    plt.close(fig)


def test_accuracy_plot_and_its_bad_inputs():
    fig = accuracy_vs_bits_plot([8, 2], {"PTQ": [97.0, 70.0], "QAT": [97.0, 95.0]}, 97.3)
    assert len(fig.axes[0].lines) == 3
    plt.close(fig)
    with pytest.raises(ValueError):
        accuracy_vs_bits_plot([8, 2], {"PTQ": [97.0]}, 97.3)
    with pytest.raises(ValueError):
        ste_plot(bits=2, scale=0.0)
    with pytest.raises(ValueError):
        ste_plot(bits=1)


def test_observer_explorer_redraws_on_change():
    x = nb06.outlier_tensor()
    ex = observer_explorer(x, bits=4, observer="minmax")
    assert ex.calls == 1 and ex.last["hi"] == float(x.max())
    ex.controls["observer"].value = "mse"
    ex.controls["bits"].value = 3
    assert ex.calls == 3 and ex.last["observer"] == "mse" and ex.last["bits"] == 3
    assert ex.last["mse"] == pytest.approx(observer_ranges(x, 3, names=("mse",))["mse"]["mse"])
    with pytest.raises(ValueError):
        observer_explorer(x, observer="histogram")
    with pytest.raises(TypeError):
        observer_explorer([1.0, 2.0])


def test_observer_explorer_feeds_batches_so_the_moving_average_lands_in_between():
    """Notebook 06 §5: the table feeds x.split(512); the widget must show the same moving-average range."""
    x = nb06.outlier_tensor()
    ex = observer_explorer(x, bits=4, observer="moving_average")
    table = make_observer("moving_average", 4)
    for chunk in x.split(512):
        table.observe(chunk)
    lo, hi = table.range()
    assert ex.last["lo"] == pytest.approx(float(lo)) and ex.last["hi"] == pytest.approx(float(hi))
    p_lo, p_hi = make_observer("percentile", 4).observe(x).range()
    assert float(x.min()) < ex.last["lo"] < float(p_lo) and float(p_hi) < ex.last["hi"] < float(x.max())
    assert "8 batches of 512" in ex.box.children[1].value
    whole = observer_explorer(x, bits=4, observer="moving_average", batch_size=None)
    assert whole.last["hi"] == float(x.max())  # one batch: the moving average is min-max
    with pytest.raises(ValueError, match="batch_size"):
        observer_ranges(x, 4, batch_size=0)
