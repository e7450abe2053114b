"""Round to nearest: the same grid as QuantLinear, the documented byte count, the round-trip bound."""

import pytest
import torch
from torch import nn

from qlearn import PerChannel, PerGroup, QuantLinear
from qlearn.core import bits as qbits
from qlearn.methods import rtn

CASES = [(4, 128, False), (4, None, False), (3, 64, False), (2, 64, True), (8, 128, True)]
IDS = [f"{b}bit-g{g}-{'sym' if s else 'asym'}" for b, g, s in CASES]


@pytest.mark.parametrize("bits,group_size,symmetric", CASES, ids=IDS)
def test_rtn_equals_quantlinear(bits, group_size, symmetric):
    linear = nn.Linear(256, 16)
    granularity = PerChannel(0) if group_size is None else PerGroup(group_size)
    layer = QuantLinear.from_linear(linear, bits=bits, granularity=granularity, symmetric=symmetric)
    qw = rtn.quantize_weight(linear.weight.detach(), bits=bits, group_size=group_size, symmetric=symmetric)
    assert torch.equal(qw.codes(), layer.codes())
    assert torch.equal(qw.dequantize(), layer.dequantized_weight())


@pytest.mark.parametrize("bits,group_size,symmetric", CASES, ids=IDS)
def test_nbytes_is_packed_codes_plus_fp32_scale_int8_zero_point(bits, group_size, symmetric):
    W = torch.randn(16, 256)
    qw = rtn.quantize_weight(W, bits=bits, group_size=group_size, symmetric=symmetric)
    container = 2 if bits == 2 else 4 if bits <= 4 else 8  # 3-bit codes live in 4-bit slots
    granularity = PerChannel(0) if group_size is None else PerGroup(group_size)
    expected = qbits.storage_bytes(W.shape, container, granularity, symmetric, scale_bits=32, zero_point_bits=8)
    assert qw.nbytes == expected
    assert qw.bits_per_weight == pytest.approx(8 * expected / W.numel())


@pytest.mark.parametrize("bits", [2, 4, 8], ids=lambda b: f"{b}bit")
def test_round_trip_error_within_half_a_step(bits):
    W = torch.randn(8, 128)
    qw = rtn.quantize_weight(W, bits=bits, group_size=32)
    err = (qw.dequantize() - W).abs().reshape(8, 4, 32)  # (out, groups, g)
    assert bool((err <= qw.scale / 2 * (1 + 1e-5)).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_dequantize_keeps_w_dtype(dtype):
    W = torch.randn(4, 64).to(dtype)
    assert rtn.quantize_weight(W, group_size=32).dequantize().dtype == dtype
