"""methods.weight: the stored bytes are what nbytes counts, a float16 grid never dequantizes to inf, and the
QuantLinear built from a UniformWeight computes with exactly its codes."""

import torch
from torch import nn

from qlearn import PerGroup
from qlearn.methods import rtn
from qlearn.methods.weight import group_size_of, uniform_layer


def test_nbytes_is_the_sum_of_the_stored_tensors():
    qw = rtn.quantize_weight(torch.randn(16, 64), bits=4, group_size=32)
    assert qw.nbytes == sum(t.numel() * t.element_size() for t in qw.stored().values())
    assert qw.bits_per_weight == 8 * qw.nbytes / (16 * 64)


def test_a_float16_grid_at_65504_dequantizes_finite():
    W = torch.randn(4, 64)
    W[:, 0] = 65504.0
    W_hat = rtn.quantize_weight(W.half(), bits=3, group_size=32).dequantize()
    assert W_hat.dtype == torch.float16 and bool(torch.isfinite(W_hat).all())


def test_uniform_layer_applies_the_dequantized_weight():
    linear = nn.Linear(64, 16)
    qw = rtn.quantize_weight(linear.weight.detach(), bits=4, group_size=32)
    layer = uniform_layer(linear, qw, kernel="reference")
    x = torch.randn(3, 64)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, qw.dequantize(), linear.bias))
    assert group_size_of(PerGroup(32)) == 32
