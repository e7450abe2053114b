"""The LLM.int8() threshold explorer, driven without a kernel: its numbers are int8_mixed_matmul's."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qlearn.methods.llm_int8 import Int8Weight, int8_mixed_matmul, outlier_columns  # noqa: E402
from qlearn.widgets import threshold_explorer  # noqa: E402
from qlearn.widgets.outliers import threshold_sweep  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(24, 64, generator=g).clamp(-3, 3)
    X[:, [5, 17, 42]] = torch.tensor([8.0, 20.0, 40.0]) * torch.randn(24, 3, generator=g).sign()  # |x| = 8, 20, 40
    W = 0.05 * torch.randn(32, 64, generator=g)
    return X, W


def test_sweep_matches_the_method_at_every_threshold():
    X, W = _layer()
    sweep = threshold_sweep(X, W, thresholds=(2.0, 6.0, 1000.0))
    Y = X @ W.T
    for k, t in enumerate(sweep["thresholds"]):
        cols = outlier_columns(X, t)
        assert torch.equal(sweep["columns"][k], cols)
        assert sweep["float_share"][k] == cols.numel() / 64
        Y_hat = int8_mixed_matmul(X, Int8Weight.from_float(W), t)
        assert sweep["error"][k] == pytest.approx(float((Y_hat - Y).norm() / Y.norm()), rel=1e-6)
    # a threshold above max|X| is plain vector-wise int8
    assert sweep["n_kept"][-1] == 0 and sweep["error"][-1] == pytest.approx(sweep["plain_error"], rel=1e-6)


def test_keeping_the_outliers_in_float_cuts_the_error():
    X, W = _layer()
    sweep = threshold_sweep(X, W, thresholds=(6.0,))
    assert sweep["n_kept"] == [3]
    assert sweep["error"][0] < sweep["plain_error"] / 3  # the floor left is the int8 weights' own error


def test_slider_redraws_from_the_precomputed_sweep():
    X, W = _layer()
    e = threshold_explorer(X, W, threshold=6.0, thresholds=(2.0, 6.0, 30.0))
    assert e.calls == 1 and e.last["n_kept"] == 3 and isinstance(e.figure, Figure)
    assert "3 columns in float" in e.box.children[1].value
    e.controls["threshold"].value = 30.0
    assert e.calls == 2 and e.last["threshold"] == 30.0
    assert e.last["columns"] == [42]
    assert e.last["error"] == e.sweep["error"][2]
    assert "threshold 30" in e.figure.axes[0].get_title()


@pytest.mark.parametrize("kwargs, err", [
    (dict(thresholds=(6.0, 2.0)), ValueError),
    (dict(thresholds=()), ValueError),
    (dict(thresholds=(0.0, 1.0)), ValueError),
    (dict(thresholds="6"), TypeError),
    (dict(threshold=7.0), ValueError),
    (dict(W=torch.ones(4, 3)), ValueError),
], ids=["decreasing", "empty", "zero", "string", "default-not-swept", "shape-mismatch"])
def test_bad_inputs(kwargs, err):
    X, W = _layer()
    args = dict(X=X, W=W)
    args.update(kwargs)
    with pytest.raises(err):
        threshold_explorer(**args)
