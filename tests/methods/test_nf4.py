"""NF4 against the real bitsandbytes: the code table, the codes, the reconstruction, double quantization."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qlearn import model_size_bytes
from qlearn.methods import nf4, rtn
from qlearn.methods.nf4 import NF4Linear

bnb_functional = pytest.importorskip("bitsandbytes.functional")


def bnb_nibbles_to_ours(packed: torch.Tensor) -> torch.Tensor:
    """bitsandbytes puts the first code of a byte in the high nibble, packing.pack in the low one."""
    return ((packed & 0x0F) << 4) | (packed >> 4)


def test_code_table_is_bitsandbytes_nf4():
    assert torch.equal(nf4.NF4_CODE, bnb_functional.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(nf4.normal_float_code(), nf4.NF4_CODE)


def test_dynamic_code_is_bitsandbytes_dynamic_map():
    assert torch.equal(nf4.dynamic_code(), bnb_functional.create_dynamic_map())


def test_code_is_quantiles_of_the_normal():
    code = nf4.NF4_CODE
    assert code.shape == (16,) and bool((code[1:] > code[:-1]).all())
    assert (code[0], code[7], code[15]) == (-1.0, 0.0, 1.0)
    # the positive half are equally spaced normal quantiles, rescaled by the outermost one
    p = torch.distributions.Normal(0.0, 1.0).cdf(code[8:].double()
                                                 * torch.special.ndtri(torch.tensor(nf4.NF4_OFFSET).double()))
    steps = p[1:] - p[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-4)


@pytest.mark.parametrize("block_size", [64, 128], ids=lambda b: f"block{b}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_codes_and_dequantize_equal_bitsandbytes(block_size, dtype):
    W = (torch.randn(48, 256) * 0.02).to(dtype)
    W[3, :block_size] = 0.0  # an all-zero block
    qw = nf4.quantize_weight(W, group_size=block_size)
    packed, state = bnb_functional.quantize_4bit(W, blocksize=block_size, quant_type="nf4")
    assert torch.equal(qw.W_q.reshape(-1), bnb_nibbles_to_ours(packed.reshape(-1)))
    assert torch.equal(qw.absmax.reshape(-1), state.absmax)
    ref = bnb_functional.dequantize_4bit(packed, state)
    W_hat = qw.dequantize()
    assert W_hat.dtype == dtype
    assert torch.allclose(W_hat.float(), ref.float(), rtol=1e-2 if dtype != torch.float32 else 1e-6, atol=1e-8)
    assert bool((W_hat[3, :block_size] == 0).all())


def test_double_quant_matches_bitsandbytes():
    W = torch.randn(300, 512) * 0.05  # 2400 blocks: 9 full 256-blocks of absmax and a partial one
    qw = nf4.quantize_weight(W, group_size=64, double_quant=True)
    packed, state = bnb_functional.quantize_4bit(W, blocksize=64, quant_type="nf4", compress_statistics=True)
    assert torch.equal(qw.W_q.reshape(-1), bnb_nibbles_to_ours(packed.reshape(-1)))
    assert torch.allclose(qw.absmax_mean, state.offset.reshape(()))
    assert torch.equal(qw.absmax_scale, state.state2.absmax)
    # bitsandbytes' CPU kernel is not always the nearest code: a few absmax codes differ by one step
    diff = (qw.absmax_q.int() - state.absmax.int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01
    ref = bnb_functional.dequantize_4bit(packed, state)
    same = (diff == 0).repeat_interleave(64).reshape(W.shape)
    assert torch.allclose(qw.dequantize()[same], ref[same], rtol=1e-6, atol=1e-7)
    assert float((qw.dequantize() - ref).abs().max()) < 0.01 * float(W.abs().max())


def test_double_quant_picks_the_nearest_absmax_code():
    W = torch.randn(64, 512)
    qw = nf4.quantize_weight(W, double_quant=True)
    exact = nf4.quantize_weight(W).absmax.reshape(-1) - qw.absmax_mean
    scale = qw.absmax_scale.repeat_interleave(nf4.ABSMAX_BLOCK)[: exact.numel()]
    dist = (exact / scale)[:, None] - nf4.dynamic_code()[None, :]  # (n_blocks, 256)
    chosen = dist.abs().gather(1, qw.absmax_q.long()[:, None]).squeeze(1)
    assert bool((chosen <= dist.abs().amin(1) + 1e-6).all())


@pytest.mark.parametrize("double_quant", [False, True], ids=["fp32-absmax", "double-quant"])
def test_bits_per_weight(double_quant):
    W = torch.randn(256, 512)
    qw = nf4.quantize_weight(W, group_size=64, double_quant=double_quant)
    n_blocks = W.numel() // 64
    expected = 4.5 if not double_quant else 4 + 8 / 64 + (32 * math.ceil(n_blocks / 256) + 32) / W.numel()
    assert qw.bits_per_weight == pytest.approx(expected)
    assert (qw.bits_per_weight < 4.13) == double_quant


def test_nf4_beats_absmax_int4_on_gaussian_weights():
    W = torch.randn(256, 512)
    nf4_mse = float((nf4.quantize_weight(W, group_size=64).dequantize() - W).square().mean())
    int4 = rtn.quantize_weight(W, bits=4, group_size=64, symmetric=True).dequantize()
    assert nf4_mse < float((int4 - W).square().mean())


@pytest.mark.parametrize("shape, block", [((6, 64), 32), ((4, 9), 3)], ids=["even-in-byte-table", "odd-in-codes"])
def test_dequantize_paths_agree_with_the_codes(shape, block):
    W = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    qw = nf4.quantize_weight(W, group_size=block)
    expected = (nf4.NF4_CODE[qw.codes().long()].reshape(shape[0], -1, block) * qw.absmax_values()).reshape(shape)
    assert torch.equal(qw.dequantize(), expected)


# ---- nf4_linear (merged) ----

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
