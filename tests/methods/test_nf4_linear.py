"""NF4Linear: the forward of the stored NF4 weight, real bytes, state_dict round trip, gradients to the input."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qlearn import model_size_bytes
from qlearn.methods import nf4
from qlearn.methods.nf4 import NF4Linear

bnb_functional = pytest.importorskip("bitsandbytes.functional")


@pytest.mark.parametrize("double_quant", [False, True], ids=["fp32-absmax", "double-quant"])
def test_forward_is_linear_with_the_nf4_weight(double_quant):
    linear = nn.Linear(128, 32)
    layer = NF4Linear.from_linear(linear, double_quant=double_quant)
    x = torch.randn(5, 7, 128)
    W_hat = nf4.quantize_weight(linear.weight.detach(), double_quant=double_quant).dequantize()
    assert torch.allclose(layer(x), F.linear(x, W_hat, linear.bias), atol=1e-6)


def test_weight_matches_bitsandbytes():
    linear = nn.Linear(256, 16)
    packed, state = bnb_functional.quantize_4bit(linear.weight.detach(), blocksize=64, quant_type="nf4")
    ref = bnb_functional.dequantize_4bit(packed, state)
    assert torch.allclose(NF4Linear.from_linear(linear).dequantized_weight(), ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("double_quant", [False, True], ids=["fp32-absmax", "double-quant"])
def test_bytes_are_the_stored_ones(double_quant):
    linear = nn.Linear(512, 256)
    layer = NF4Linear.from_linear(linear, double_quant=double_quant)
    qw = nf4.quantize_weight(linear.weight.detach(), double_quant=double_quant)
    assert model_size_bytes(layer) == qw.nbytes + 256 * 4  # + the float32 bias
    assert model_size_bytes(layer) < model_size_bytes(linear) / 6


@pytest.mark.parametrize("double_quant", [False, True], ids=["fp32-absmax", "double-quant"])
def test_state_dict_round_trip_into_a_skeleton(double_quant):
    layer = NF4Linear.from_linear(nn.Linear(128, 16), double_quant=double_quant)
    fresh = NF4Linear(128, 16, double_quant=double_quant)
    assert bool((fresh.dequantized_weight() == 0).all())
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(3, 128)
    assert torch.equal(fresh(x), layer(x))


def test_gradients_flow_to_the_input_not_the_codes():
    layer = NF4Linear.from_linear(nn.Linear(64, 8))
    x = torch.randn(4, 64, requires_grad=True)
    layer(x).sum().backward()
    assert torch.allclose(x.grad, layer.dequantized_weight().sum(0).expand(4, 64), atol=1e-6)
    assert layer.bias.grad is not None and layer.weight_q.grad is None


def test_bad_input():
    layer = NF4Linear.from_linear(nn.Linear(64, 8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 64\)"):
        layer(torch.randn(2, 32))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 64, dtype=torch.long))
    with pytest.raises(TypeError, match="nn.Linear"):
        NF4Linear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="block_size"):
        NF4Linear(100, 8, block_size=64)
