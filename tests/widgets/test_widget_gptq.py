"""The GPTQ explorer, built without a kernel: every control redraws, and the numbers it shows are GPTQ's and RTN's."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qlearn.data.tensors import correlated_inputs  # noqa: E402
from qlearn.methods import gptq, rtn  # noqa: E402
from qlearn.widgets import gptq_explorer  # noqa: E402
from qlearn.widgets.gptq import DAMPS, output_mse  # noqa: E402


@pytest.fixture(scope="module")
def layer():
    W = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    X = correlated_inputs(384, 64, rho=0.9, seed=1)
    return W, X[:256], X[256:]


def test_default_shows_gptq_beating_rtn(layer):
    W, X, X_test = layer
    ex = gptq_explorer(W, X, X_test, bits=3)
    want = output_mse(X_test, W, gptq.quantize_weight(W, X, bits=3, group_size=None).dequantize())
    rtn_err = output_mse(X_test, W, rtn.quantize_weight(W, bits=3, group_size=None).dequantize())
    assert ex.last["gptq_mse"] == pytest.approx(want, rel=1e-6)
    assert ex.last["rtn_mse"] == pytest.approx(rtn_err, rel=1e-6)
    assert ex.last["ratio"] < 1
    assert isinstance(ex.figure, Figure) and ex.calls == 1
    assert ("image/png" in ex._repr_mimebundle_()) == (int(__import__("ipywidgets").__version__.split(".")[0]) >= 8)


@pytest.mark.parametrize("control,value", [("damp", 1.0), ("group_size", 32), ("act_order", True)],
                         ids=["damp", "group", "act_order"])
def test_each_control_redraws_with_its_setting(layer, control, value):
    W, X, X_test = layer
    ex = gptq_explorer(W, X, X_test, bits=3)
    ex.controls[control].value = value
    assert ex.calls == 2 and ex.last[control] == value
    settings = {k: ex.last[k] for k in ("damp", "group_size", "act_order")}
    want = output_mse(X_test, W, gptq.quantize_weight(W, X, bits=3, **settings).dequantize())
    assert ex.last["gptq_mse"] == pytest.approx(want, rel=1e-6)


def test_every_damp_is_reachable(layer):
    W, X, X_test = layer
    ex = gptq_explorer(W, X, X_test, bits=4)
    for d in DAMPS:
        ex.controls["damp"].value = d
        assert ex.last["damp"] == d


def test_bad_settings_are_rejected(layer):
    W, X, X_test = layer
    with pytest.raises(ValueError, match="group_size"):
        gptq_explorer(W, X, X_test, group_size=48)
    with pytest.raises(ValueError, match="damp"):
        gptq_explorer(W, X, X_test, damp=0.5)
    with pytest.raises(ValueError, match="input columns"):
        gptq_explorer(W, X[:, :32], X_test)
