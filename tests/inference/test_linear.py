"""QuantLinear: real integer storage, the reference path equals fake quantization bit for bit, bad input."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qlearn import PerChannel, PerGroup, PerTensor, PerToken, QuantLinear, choose_qparams, fake_quantize

CASES = [(b, g, s) for b in (2, 3, 4, 8) for g in (PerTensor(), PerChannel(0), PerGroup(32)) for s in (True, False)]


def _layer(seed=0, in_features=96, out_features=48, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


@pytest.mark.parametrize("bits,granularity,symmetric", CASES,
                         ids=[f"{b}bit-{g}-{'sym' if s else 'asym'}" for b, g, s in CASES])
def test_reference_equals_fake_quantize_bit_for_bit(bits, granularity, symmetric):
    lin = _layer()
    x = torch.randn(7, 96)
    qp = choose_qparams(lin.weight, bits=bits, symmetric=symmetric, granularity=granularity)
    layer = QuantLinear.from_linear(lin, qparams=qp, kernel="reference")
    expected = F.linear(x, fake_quantize(lin.weight, qparams=qp), lin.bias)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.dequantized_weight(), fake_quantize(lin.weight, qparams=qp))


@pytest.mark.parametrize("bits,dtype,cols", [(8, torch.int8, 96), (4, torch.uint8, 48), (3, torch.uint8, 48),
                                             (2, torch.uint8, 24)], ids=["int8", "int4", "int3", "int2"])
def test_weights_are_stored_as_integers(bits, dtype, cols):
    layer = QuantLinear.from_linear(_layer(), bits=bits, granularity=PerGroup(32))
    assert layer.weight_q.dtype == dtype and layer.weight_q.shape == (48, cols)
    assert layer.scale.shape == (48, 3, 1) and layer.zero_point.dtype == torch.int8
    assert not any(p.dtype == torch.float32 and p.ndim == 2 for p in layer.parameters())


def test_from_linear_without_qparams_matches_choose_qparams():
    lin = _layer(bias=False)
    layer = QuantLinear.from_linear(lin, bits=4, granularity=PerGroup(32), symmetric=False, kernel="reference")
    qp = choose_qparams(lin.weight, bits=4, symmetric=False, granularity=PerGroup(32))
    assert layer.bias is None
    assert torch.equal(layer.dequantized_weight(), fake_quantize(lin.weight, qparams=qp))


def test_w8a8_reference_quantizes_activations_per_token():
    lin = _layer()
    x = torch.randn(5, 96) * torch.logspace(-2, 2, 5).unsqueeze(1)
    layer = QuantLinear.from_linear(lin, activations=8, kernel="reference")
    x_hat = fake_quantize(x, bits=8, symmetric=True, granularity=PerToken())
    assert torch.equal(layer(x), F.linear(x_hat, layer.dequantized_weight(), lin.bias))


def test_leading_dims_and_bfloat16_input():
    layer = QuantLinear.from_linear(_layer(), kernel="reference")
    x = torch.randn(2, 3, 96)
    assert layer(x).shape == (2, 3, 48)
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_quantized_weights_are_close_to_float():
    lin = _layer()
    x = torch.randn(16, 96)
    with torch.no_grad():
        errors = [float((QuantLinear.from_linear(lin, bits=b)(x) - lin(x)).norm()) for b in (8, 4, 2)]
    assert errors[0] < errors[1] < errors[2]


def test_state_dict_round_trip_into_skeleton():
    layer = QuantLinear.from_linear(_layer(), bits=4, granularity=PerGroup(32))
    skeleton = QuantLinear(96, 48, bits=4, granularity=PerGroup(32))
    x = torch.randn(3, 96)
    skeleton(x)  # builds a kernel cache that loading must invalidate
    skeleton.load_state_dict(layer.state_dict())
    assert torch.equal(skeleton(x), layer(x))


@pytest.mark.parametrize("kwargs,err", [
    ({"bits": 9}, ValueError), ({"bits": 4.0}, TypeError), ({"granularity": PerGroup(50)}, ValueError),
    ({"granularity": PerToken()}, ValueError), ({"kernel": "fast"}, ValueError), ({"activations": 16}, ValueError),
    ({"symmetric": 1}, TypeError), ({"granularity": PerGroup}, TypeError),
], ids=["bits-9", "bits-float", "group-not-dividing", "per-token", "kernel", "activations-16", "symmetric-int",
        "granularity-class"])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        QuantLinear.from_linear(_layer(), **kwargs)


def test_bad_layer_and_inputs():
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantLinear.from_linear(nn.Conv1d(3, 3, 1))
    with pytest.raises(ValueError, match="meta"):
        QuantLinear.from_linear(nn.Linear(4, 4, device="meta"))
    qp = choose_qparams(torch.randn(10, 96), granularity=PerChannel(0))
    with pytest.raises(ValueError, match="do not fit"):
        QuantLinear.from_linear(_layer(), qparams=qp)
    layer = QuantLinear.from_linear(_layer())
    with pytest.raises(ValueError, match=r"\(\.\.\., 96\)"):
        layer(torch.randn(2, 95))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 96, dtype=torch.int64))
