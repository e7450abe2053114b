"""FP8 E4M3 / E5M2: the formats derived from their bits equal torch's float8 dtypes; the scaled weights equal
torchao's float8 primitives bit for bit; FP8Linear serves them through torch._scaled_mm and saves / loads."""

import os

os.environ["TORCHAO_FORCE_SKIP_LOADING_SO_FILES"] = "1"  # torchao's CUDA extensions: not on this CPU machine

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchao.quantization.quant_primitives import _choose_scale_float8, _quantize_affine_float8  # noqa: E402

import qlearn  # noqa: E402
from qlearn.data.models import minilm_weight  # noqa: E402
from qlearn.inference.serialize import load_quantized, save_quantized  # noqa: E402
from qlearn.methods import fp8  # noqa: E402

TORCH_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@pytest.mark.parametrize("fmt, dtype", [(fp8.E4M3, torch.float8_e4m3fn), (fp8.E5M2, torch.float8_e5m2)],
                         ids=["e4m3", "e5m2"])
def test_every_code_value_equals_torchs_float8_dtype(fmt, dtype):
    mine = fmt.code_values()  # (256,) from the bit fields
    torchs = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).double()
    assert torch.equal(torch.isnan(mine), torch.isnan(torchs))
    finite = ~torch.isnan(mine)
    assert torch.equal(mine[finite], torchs[finite])  # inf included for E5M2
    info = torch.finfo(dtype)
    assert fmt.max == info.max and fmt.magnitudes()[1] == info.smallest_normal * 2.0 ** -fmt.mantissa_bits


def test_format_constants_follow_from_the_bits():
    assert (fp8.E4M3.bias, fp8.E4M3.max, fp8.E4M3.emax) == (7, 448.0, 8)
    assert (fp8.E5M2.bias, fp8.E5M2.max, fp8.E5M2.emax) == (15, 57344.0, 15)
    assert int(torch.isnan(fp8.E4M3.code_values()).sum()) == 2  # S.1111.111 only: no infinities
    assert int(torch.isinf(fp8.E5M2.code_values()).sum()) == 2  # IEEE: +-inf and 6 NaNs
    assert int(torch.isnan(fp8.E5M2.code_values()).sum()) == 6


@pytest.mark.parametrize("fmt, dtype", [(fp8.E4M3, torch.float8_e4m3fn), (fp8.E5M2, torch.float8_e5m2)],
                         ids=["e4m3", "e5m2"])
def test_encode_rounds_like_torchs_cast_ties_and_saturation_included(fmt, dtype):
    mags = fmt.magnitudes()
    ties = ((mags[:-1] + mags[1:]) / 2).float()  # exact midpoints: ties to even
    x = torch.cat([torch.randn(4000) * 10.0 ** torch.randint(-8, 6, (4000,)).float(), ties, -ties,
                   torch.tensor([0.0, -0.0, 1e30, -1e30, fmt.max, 1e-45])])
    expected = x.clamp(-fmt.max, fmt.max).to(dtype).view(torch.uint8)
    assert torch.equal(fp8.encode(x, fmt), expected)
    assert torch.equal(fp8.decode(expected, fmt), expected.view(dtype).float())


@pytest.mark.parametrize("format", ["fp8_e4m3", "fp8_e5m2"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "block"])
def test_quantize_weight_equals_torchaos_float8_primitives(format, granularity):
    W = minilm_weight("encoder.layer.1.output.dense")  # (384, 1536): 128 x 128 blocks fit
    block = {"tensor": list(W.shape), "channel": [1, W.shape[1]], "block": [128, 128]}[granularity]
    scale = _choose_scale_float8(W, block, TORCH_DTYPES[format])
    W_q = _quantize_affine_float8(W, scale, TORCH_DTYPES[format])
    qw = fp8.quantize_weight(W, format=format, granularity=granularity)
    assert torch.equal(qw.scale, scale.reshape(qw.scale.shape))
    assert torch.equal(qw.W_q.view(torch.uint8), W_q.view(torch.uint8))
    assert torch.equal(qw.dequantize(), W_q.float() * qw.scale_full())
    assert qw.bits_per_weight == 8 + 32 * qw.scale.numel() / W.numel()


def test_partial_blocks_and_edge_values():
    W = torch.zeros(200, 130)
    W[0, 0], W[150, 129], W[199, 1] = 1e30, -3e-20, -0.0
    qw = fp8.quantize_weight(W, granularity="block")
    assert qw.scale.shape == (2, 2)
    W_hat = qw.dequantize()
    assert torch.isfinite(W_hat).all() and W_hat[0, 0] == 1e30 and W_hat[150, 129] == -3e-20
    assert (W_hat[W == 0] == 0).all()  # an all-zero block gets the floor scale and zero codes
    with pytest.raises(ValueError, match="granularity"):
        fp8.quantize_weight(W, granularity="row")
    with pytest.raises(ValueError, match="format"):
        fp8.quantize_weight(W, format="fp8_e3m4")
    with pytest.raises(TypeError, match="dtype"):
        fp8.FP8Linear(8, 8, dtype=torch.int8)
    with pytest.raises(TypeError, match="dtype"):
        fp8.FP8Linear(8, 8, dtype=torch.float8_e4m3fn)  # codes, not a dtype to compute in
    huge = fp8.quantize_weight(W[:16, :64], granularity="block", block_size=10**9)  # one block, nothing padded to it
    assert torch.equal(huge.dequantize(), fp8.quantize_weight(W[:16, :64], granularity="tensor").dequantize())


def test_scaled_mm_layer_equals_its_emulation_and_weight_only_equals_dequantize():
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    x = torch.randn(3, 5, 96)
    for granularity in fp8.GRANULARITIES:
        layer = fp8.FP8Linear.from_linear(linear, granularity=granularity, block_size=32, activations="fp8_e4m3")
        x_q, x_scale = fp8.quantize_activations(x.reshape(-1, 96))
        emulated = (x_q.float() * x_scale) @ layer.quantized_weight().dequantize().T + linear.bias
        assert torch.allclose(layer(x).reshape(-1, 40), emulated, rtol=1e-5, atol=1e-5)
        weight_only = fp8.FP8Linear.from_linear(linear, granularity=granularity, block_size=32)
        expected = x @ weight_only.quantized_weight().dequantize().T + linear.bias
        assert torch.equal(weight_only(x), expected)
        assert (weight_only(x) - linear(x)).abs().max() < 0.05


def test_model_level_fp8_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
    x = torch.randn(4, 64)
    ref = model(x)
    report = qlearn.quantize_model(model, method="fp8", fp8_activations=True)
    assert type(model[0]).__name__ == "FP8Linear" and model[0].weight_q.dtype == torch.float8_e4m3fn
    assert report.bytes_after < 0.3 * report.bytes_before
    y = model(x)
    assert (y - ref).norm() / ref.norm() < 0.05
    save_quantized(model, tmp_path / "m.safetensors")
    with torch.device("meta"):
        skeleton = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
    assert torch.equal(load_quantized(skeleton, tmp_path / "m.safetensors")(x), y)
    tensor_model = nn.Sequential(nn.Linear(64, 128))
    qlearn.quantize_model(tensor_model, method="fp8", granularity=qlearn.PerTensor(), format="fp8_e5m2")
    assert tensor_model[0].weight_scale.shape == (1, 1) and tensor_model[0].weight_q.dtype == torch.float8_e5m2
