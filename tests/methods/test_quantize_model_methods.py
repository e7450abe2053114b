"""Every weight method through quantize_model on a tiny MLP: layers, bytes, quality, save / load, bad inputs."""

import dataclasses

import pytest
import torch
from torch import nn

from qlearn import (
    PerChannel,
    PerGroup,
    load_quantized,
    model_size_bytes,
    quantize_model,
    register_method,
    save_quantized,
)
from qlearn.inference.linear import QuantLinear
from qlearn.inference.registry import get_method
from qlearn.methods import gptq, hqq, llm_int8
from qlearn.methods.awq import AWQLinear
from qlearn.methods.hqq import HQQLinear
from qlearn.methods.llm_int8 import Int8MixedLinear
from qlearn.methods.nf4 import NF4Linear

from .toys import ar1_inputs


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 32))


def _skeleton():
    with torch.device("meta"):
        return _mlp()


X_CAL = ar1_inputs(512, 64, seed=1)
X_TEST = ar1_inputs(256, 64, seed=2)

CASES = {  # method -> (quantize_model kwargs, layer type)
    "rtn": ({"bits": 4, "granularity": PerGroup(32), "symmetric": False}, QuantLinear),
    "gptq": ({"bits": 4, "granularity": PerGroup(32), "calibration": X_CAL.split(128)}, QuantLinear),
    "awq": ({"bits": 4, "granularity": PerGroup(32), "calibration": X_CAL.split(128)}, (QuantLinear, AWQLinear)),
    "hqq": ({"bits": 4, "granularity": PerGroup(32)}, HQQLinear),
    "nf4": ({"bits": 4, "granularity": PerGroup(32)}, NF4Linear),
    "llm_int8": ({"bits": 8, "granularity": PerChannel()}, Int8MixedLinear),
}


def _error(model, reference):
    with torch.no_grad():
        return float((model(X_TEST) - reference).norm() / reference.norm())


@pytest.mark.parametrize("method", CASES, ids=str)
def test_every_method_end_to_end(method, tmp_path):
    kwargs, layer_type = CASES[method]
    model = _mlp()
    with torch.no_grad():
        reference = model(X_TEST)
    report = quantize_model(model, method=method, **kwargs)
    assert report.replaced == ("0", "2", "4") and report.method == method
    assert all(isinstance(model[i], layer_type) for i in (0, 2, 4))
    assert report.bytes_after == model_size_bytes(model) < 0.35 * report.bytes_before
    assert _error(model, reference) < (0.02 if method == "llm_int8" else 0.2)
    path = tmp_path / f"{method}.safetensors"
    save_quantized(model, path)
    loaded = load_quantized(_skeleton(), path)
    assert [type(m) for m in loaded] == [type(m) for m in model]
    with torch.no_grad():
        assert torch.equal(loaded(X_TEST), model(X_TEST))
    assert model_size_bytes(loaded) == model_size_bytes(model)


@pytest.mark.parametrize("method", ["gptq", "awq", "hqq"], ids=str)
@pytest.mark.parametrize("bits", [3, 4], ids=lambda b: f"w{b}")
def test_method_beats_round_to_nearest(method, bits):
    kwargs = {"bits": bits, "granularity": PerGroup(32)}
    rtn_model, model = _mlp(), _mlp()
    with torch.no_grad():
        reference = model(X_TEST)
    quantize_model(rtn_model, method="rtn", symmetric=False, **kwargs)
    calibration = {"calibration": X_CAL.split(128)} if get_method(method).needs_calibration else {}
    quantize_model(model, method=method, **kwargs, **calibration)
    assert _error(model, reference) < _error(rtn_model, reference)


@pytest.mark.parametrize("grid", ["minmax", "mse"])
def test_gptq_layer_equals_the_tensor_level_method_on_its_inputs(grid):
    model = _mlp()
    W0 = model[0].weight.detach().clone()
    quantize_model(model, bits=4, granularity=PerGroup(32), method="gptq", calibration=X_CAL.split(128), damp=0.05,
                   grid=grid)
    expected = gptq.quantize_weight(W0, X_CAL, bits=4, group_size=32, damp=0.05, grid=grid)
    other = gptq.quantize_weight(W0, X_CAL, bits=4, group_size=32, damp=0.05,
                                 grid="mse" if grid == "minmax" else "minmax")
    assert not torch.equal(model[0].codes(), other.codes())  # the grid option really reached GPTQ
    assert torch.equal(model[0].codes(), expected.codes())
    assert torch.allclose(model[0].dequantized_weight(), expected.dequantize())


def test_sequential_gptq_differs_from_parallel_gptq():
    parallel = register_method(dataclasses.replace(get_method("gptq"), name="gptq-parallel", sequential=False),
                               replace=True)
    seq_model, par_model = _mlp(), _mlp()
    quantize_model(seq_model, bits=3, granularity=PerGroup(32), method="gptq", calibration=X_CAL.split(128))
    quantize_model(par_model, bits=3, granularity=PerGroup(32), method=parallel.name, calibration=X_CAL.split(128))
    assert torch.equal(seq_model[0].codes(), par_model[0].codes())  # same input for the first layer
    assert not torch.equal(seq_model[4].codes(), par_model[4].codes())


def test_hqq_layer_keeps_the_float_zero_point():
    model = _mlp()
    W0 = model[0].weight.detach().clone()
    quantize_model(model, bits=3, granularity=PerGroup(32), method="hqq", iters=10)
    expected = hqq.quantize_weight(W0, bits=3, group_size=32, iters=10)
    assert model[0].zero_point.dtype == torch.float32
    assert bool((model[0].zero_point != model[0].zero_point.round()).any())
    assert torch.equal(model[0].dequantized_weight(), expected.dequantize())


def test_llm_int8_reports_the_float_kept_columns_after_a_forward():
    model = _mlp()
    report = quantize_model(model, method="llm_int8", threshold=6.0)
    x = torch.randn(16, 64)
    x[3, [5, 40]] = 30.0
    with torch.no_grad():
        model(x)
    stats = report.stats()
    assert set(stats) == {"0", "2", "4"}
    assert stats["0"]["float_columns_last"] == llm_int8.outlier_columns(x, 6.0).numel() == 2
    assert stats["0"]["forwards"] == 1


@pytest.mark.parametrize("method,kwargs,err,match", [
    ("nf4", {"bits": 8, "granularity": PerGroup(32)}, ValueError, "bits in"),
    ("nf4", {"bits": 4, "granularity": PerChannel()}, TypeError, "PerGroup"),
    ("hqq", {"bits": 4, "granularity": PerGroup(32), "symmetric": True}, ValueError, "symmetric"),
    ("gptq", {"bits": 4, "granularity": PerGroup(32)}, ValueError, "needs calibration"),
    ("gptq", {"bits": 4, "granularity": PerGroup(32), "calibration": [X_CAL], "damp": -1.0}, ValueError, "damp"),
    ("gptq", {"bits": 4, "granularity": PerGroup(32), "calibration": [X_CAL], "grid": "l2"}, ValueError, "grid"),
    ("llm_int8", {"threshold": -1.0}, ValueError, "threshold"),
    ("llm_int8", {"thresold": 6.0}, TypeError, "threshold"),
], ids=["nf4-bits", "nf4-per-channel", "hqq-symmetric", "gptq-no-data", "gptq-bad-damp", "gptq-bad-grid",
        "int8-threshold", "int8-typo"])
def test_bad_inputs_leave_the_model_untouched(method, kwargs, err, match):
    model = _mlp()
    with pytest.raises(err, match=match):
        quantize_model(model, method=method, **kwargs)
    assert all(type(m) in (nn.Linear, nn.GELU) for m in model)
