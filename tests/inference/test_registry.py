"""The quantize_model method registry: the protocol, its errors, blocks, calibration and all-or-nothing."""

import pytest
import torch
from torch import nn

from qlearn import QuantLinear, QuantMethod, quantize_model, register_method
from qlearn.inference.capture import capture_inputs, check_batches
from qlearn.inference.registry import METHODS, get_method
from qlearn.inference.targets import blocks


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))


def _batches(seed=1, n=4):
    torch.manual_seed(seed)
    return list(torch.randn(n * 8, 16).split(8))


def _spy(name, sequential, seen, fail_at=None, bits=tuple(range(2, 9))):
    def quantize_layer(layer_name, linear, X, bits, granularity, symmetric, scale_bias=1.0):
        if layer_name == fail_at:
            raise RuntimeError("spy failure")
        seen[layer_name] = None if X is None else X.clone()
        return QuantLinear.from_linear(linear, bits=bits, granularity=granularity, symmetric=symmetric)
    return register_method(QuantMethod(name, quantize_layer, needs_calibration=sequential or fail_at is not None
                                       or name.endswith("-cal"), sequential=sequential, bits=bits), replace=True)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown method 'gptqq'.*'rtn'"):
        quantize_model(_mlp(), method="gptqq")
    assert get_method("rtn") is METHODS["rtn"]


def test_method_needing_calibration_without_data_fails_clearly():
    _spy("spy-seq", True, {})
    with pytest.raises(ValueError, match="needs calibration"):
        quantize_model(_mlp(), method="spy-seq")


@pytest.mark.parametrize("kwargs,err,match", [
    ({"method": "rtn", "damp": 0.1}, TypeError, "takes no option"),
    ({"method": "spy-4bit", "bits": 8}, ValueError, "bits in"),
    ({"method": "spy-4bit", "bits": 4, "activations": 8}, ValueError, "activations"),
    ({"method": "rtn", "calibration": torch.randn(4, 16)}, TypeError, "iterable of batches"),
    ({"method": "rtn", "calibration": []}, ValueError, "empty"),
    ({"method": "rtn", "symmetric": "yes"}, ValueError, "symmetric"),
], ids=["unknown-option", "bits-not-supported", "activations-not-taken", "calibration-tensor", "calibration-empty",
        "symmetric-str"])
def test_bad_arguments_fail_before_any_layer_changes(kwargs, err, match):
    _spy("spy-4bit", False, {}, bits=(4,))
    model = _mlp()
    with pytest.raises(err, match=match):
        quantize_model(model, **kwargs)
    assert all(type(m) is not QuantLinear for m in model)


def test_quant_method_and_register_validate():
    with pytest.raises(TypeError):
        QuantMethod("x", quantize_layer=3)
    with pytest.raises(ValueError, match="needs_calibration"):
        QuantMethod("x", lambda *a: None, sequential=True)
    with pytest.raises(TypeError):
        register_method("rtn")
    with pytest.raises(ValueError, match="already registered"):
        register_method(QuantMethod("rtn", lambda *a: None))
    assert QuantMethod("x", lambda n, lin, X, b, g, s, alpha=0.5, state=None: None).options == {"alpha"}


@pytest.mark.parametrize("sequential", [True, False], ids=["sequential", "parallel"])
def test_sequential_method_sees_quantized_upstream_inputs(sequential):
    seen = {}
    name = "spy-seq" if sequential else "spy-par-cal"
    _spy(name, sequential, seen)
    model, batches = _mlp(), _batches()
    float_X = capture_inputs(_mlp(), ["0", "2", "4"], batches)
    quantize_model(model, bits=2, method=name, calibration=batches)
    assert torch.equal(seen["0"], float_X["0"])  # the first layer always sees the model's input
    for layer in ("2", "4"):
        assert seen[layer].shape == float_X[layer].shape
        assert torch.equal(seen[layer], float_X[layer]) != sequential


def test_failure_in_a_sequential_method_restores_the_model():
    _spy("spy-fail", True, {}, fail_at="4")
    model, x = _mlp(), torch.randn(3, 16)
    before = model(x)
    with pytest.raises(ValueError, match="layer '4'.*spy failure"):  # the error names the layer
        quantize_model(model, bits=4, method="spy-fail", calibration=_batches())
    assert all(type(m) in (nn.Linear, nn.ReLU) for m in model)
    assert torch.equal(model(x), before) and model.training


class _KeywordModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 8)

    def forward(self, features=None, scale=1.0):
        return self.proj(features * scale)


def test_dict_batches_run_as_keywords():
    seen = {}
    _spy("spy-kw-cal", False, seen)
    x = torch.randn(5, 16)
    quantize_model(_KeywordModel(), method="spy-kw-cal", calibration=[{"features": x, "scale": 2.0}])
    assert torch.equal(seen["proj"], 2.0 * x)


def test_capture_stops_early_and_names_layers_that_never_run():
    model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4))
    X = capture_inputs(model, ["0"], [torch.randn(3, 2, 16)])
    assert X["0"].shape == (6, 16)
    branch = nn.ModuleDict({"used": nn.Linear(4, 4), "unused": nn.Linear(4, 4)})
    model = nn.Sequential(branch["used"])
    model.add_module("unused", branch["unused"])
    model.forward = lambda x: branch["used"](x)
    with pytest.raises(ValueError, match="never ran"):
        capture_inputs(model, ["0", "unused"], [torch.randn(2, 4)])
    with pytest.raises(TypeError):
        check_batches(7)


def test_blocks_group_by_the_last_numeric_part():
    names = ["embed", "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
             "model.layers.1.self_attn.q_proj", "encoder.layer.10.output.dense", "lm_head", "0", "2"]
    assert blocks(names) == [["embed"], names[1:3], [names[3]], [names[4]], ["lm_head"], ["0"], ["2"]]
