"""Calibration hooks: what they record equals the activations computed by hand; hooks never leak."""

import pytest
import torch
from torch import nn

from qlearn import choose_qparams
from qlearn.data import digits
from qlearn.training.calibrate import calibrate
from qlearn.training.observers import MinMaxObserver, PercentileObserver

pytestmark = pytest.mark.usefixtures("one_thread")


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def inputs(n=40):
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_observed_range_equals_activations_by_hand(where, symmetric):
    model, X = small_model(), inputs()
    observers = calibrate(model, ["0", "2"], X.split(16), MinMaxObserver(8, symmetric), where=where)
    with torch.no_grad():
        acts = {"0": X if where == "input" else model[0](X),
                "2": model[:2](X) if where == "input" else model(X)}
    for name, act in acts.items():
        want = choose_qparams(act, 8, symmetric)
        got = observers[name].qparams()
        assert torch.equal(got.scale, want.scale) and torch.equal(got.zero_point, want.zero_point), name
        assert observers[name].batches == 3


def test_accepts_x_y_batches_and_a_dataloader():
    model, X = small_model(), inputs()
    y = torch.zeros(len(X), dtype=torch.long)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    a = calibrate(model, ["2"], loader)["2"].range()
    b = calibrate(model, ["2"], list(zip(X.split(16), y.split(16))))["2"].range()
    c = calibrate(model, ["2"], X.split(16))["2"].range()
    assert all(torch.equal(u, v) for u, v in zip(a, c)) and all(torch.equal(u, v) for u, v in zip(b, c))


def test_accepts_dict_batches_as_keyword_inputs():
    class Keyword(nn.Module):  # a model called like a Hugging Face one: model(input=...)
        def __init__(self):
            super().__init__()
            self.net = small_model()

        def forward(self, input):
            return self.net(input)

    model, X = Keyword(), inputs()
    a = calibrate(model, ["net.2"], [{"input": x} for x in X.split(16)])["net.2"].range()
    b = calibrate(model.net, ["2"], X.split(16))["2"].range()
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_each_layer_gets_its_own_copy_of_the_template():
    template = PercentileObserver(8, percentile=99.0)
    observers = calibrate(small_model(), ["0", "2"], inputs().split(20), template)
    assert observers["0"] is not observers["2"] and template.batches == 0
    assert isinstance(observers["0"], PercentileObserver) and observers["0"].percentile == 99.0


def test_hooks_removed_and_mode_restored_even_after_an_error():
    model = small_model().train()
    calibrate(model, ["0"], inputs().split(20))
    assert model.training and not model[0]._forward_hooks
    with pytest.raises(RuntimeError):
        calibrate(model, ["0"], [torch.randn(4, 3)])  # wrong feature size: the model itself fails
    assert model.training and not model[0]._forward_hooks


def test_no_gradients_are_recorded():
    model = small_model()
    calibrate(model, ["0"], inputs().split(20))
    assert all(p.grad is None for p in model.parameters())


def test_static_8bit_activations_keep_digits_accuracy():
    """Weights and inputs of every layer at 8 bits, ranges from calibration: within 0.5 points of fp32."""
    from qlearn.training.qat import prepare_qat

    data, model = digits.load_digits(), digits.pretrained_mlp()
    names = ["0", "2", "4"]
    observers = calibrate(model, names, data.X_train.split(128), MinMaxObserver(8))
    qmodel = prepare_qat(model, bits=8, act_qparams={n: observers[n].qparams() for n in names})
    assert abs(digits.accuracy(qmodel, data) - digits.accuracy(model, data)) <= 0.5


@pytest.mark.parametrize("kwargs, err", [
    (dict(model="net"), TypeError),
    (dict(layers="0"), TypeError),
    (dict(layers=[]), ValueError),
    (dict(layers=["7"]), ValueError),
    (dict(observer="minmax"), TypeError),
    (dict(observer=MinMaxObserver().observe(torch.ones(3))), ValueError),
    (dict(where="weights"), ValueError),
    (dict(progress="yes"), TypeError),
    (dict(batches=torch.randn(4, 8)), TypeError),
    (dict(batches={"input": torch.randn(4, 8)}), TypeError),
    (dict(batches=[]), ValueError),
    (dict(batches=[["not a tensor"]]), TypeError),
], ids=["model_str", "layers_str", "layers_empty", "unknown_layer", "observer_str", "observer_used",
        "where_bad", "progress_str", "batches_tensor", "batches_one_dict", "batches_empty", "batch_not_tensor"])
def test_bad_inputs_raise_clear_errors(kwargs, err):
    args = dict(model=small_model(), layers=["0"], batches=inputs().split(20))
    args.update(kwargs)
    with pytest.raises(err):
        calibrate(**args)


def _static_w8a8(model):
    from qlearn import PerTensor, quantize_model

    quantize_model(model, bits=8, activations=8, activation_granularity=PerTensor())
    return model


def test_calibrate_activations_sets_absmax_over_127_of_each_float_input():
    from qlearn.training.calibrate import calibrate_activations

    model, X = small_model(), inputs()
    with torch.no_grad():
        h = torch.relu(model[0](X))  # (n, 16): layer 2's float input
    q = _static_w8a8(small_model())
    with pytest.raises(ValueError, match="calibrate_activations"):
        q(X)
    observers = calibrate_activations(q, X.split(16))
    assert sorted(observers) == ["0", "2"]
    torch.testing.assert_close(q[0].activation_scale.reshape(()), X.abs().max() / 127)
    # layer 2 is calibrated on what the int8-weight layer 0 gives with float activations: close to the float h
    torch.testing.assert_close(q[2].activation_scale.reshape(()), h.abs().max() / 127, rtol=2e-2, atol=0)
    assert q[0].activations == 8 and q[0].kernel == "auto"  # restored after calibration
    with torch.no_grad():
        y, y_float = q(X), model(X)
    assert torch.isfinite(y).all()
    assert float((y - y_float).norm() / y_float.norm()) < 0.05


def test_calibrate_activations_bad_inputs():
    from qlearn.training.calibrate import calibrate_activations

    with pytest.raises(ValueError, match="no layer with static"):
        calibrate_activations(small_model(), [inputs()])
    q = _static_w8a8(small_model())
    with pytest.raises(ValueError, match="symmetric"):
        calibrate_activations(q, [inputs()], MinMaxObserver(8, symmetric=False))
    with pytest.raises(ValueError, match="bits"):
        calibrate_activations(q, [inputs()], MinMaxObserver(6, symmetric=True))
    with pytest.raises(TypeError, match="transform"):
        calibrate(small_model(), ["0"], [inputs()], transform="abs")
    assert not q[0].calibrated  # nothing was set by the failed calls
