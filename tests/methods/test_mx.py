"""MX (MXFP8 / MXFP6 / MXFP4) and NVFP4: elements derived from their bits, codes and scales equal to torchao's
reference (bit for bit, on real MiniLM and SmolLM2 weights and on edge cases), MXFP4 bytes against gguf-py,
and the model-level method "mx"."""

import os

os.environ["TORCHAO_FORCE_SKIP_LOADING_SO_FILES"] = "1"  # torchao's CUDA extensions: not on this CPU machine

import gguf  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchao.prototype.mx_formats import constants as ao  # noqa: E402
from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, f6_e2m3_unpacked_to_f32, f6_e3m2_unpacked_to_f32  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import MXTensor  # noqa: E402
from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale  # noqa: E402

import qlearn  # noqa: E402
from qlearn.core import metrics  # noqa: E402
from qlearn.data import llm  # noqa: E402
from qlearn.data.models import minilm_weight  # noqa: E402
from qlearn.inference.serialize import load_quantized, save_quantized  # noqa: E402
from qlearn.methods import mx  # noqa: E402

ELEMENTS = {"mxfp8_e4m3": torch.float8_e4m3fn, "mxfp8_e5m2": torch.float8_e5m2, "mxfp6_e2m3": ao.DTYPE_FP6_E2M3,
            "mxfp6_e3m2": ao.DTYPE_FP6_E3M2, "mxfp4": torch.float4_e2m1fn_x2}


def smollm2_weights(*names: str) -> dict[str, torch.Tensor]:
    """Weights of the bundled SmolLM2 GGUF, dequantized by gguf-py (no model load)."""
    reader = gguf.GGUFReader(str(llm.smollm2_gguf()))
    return {f"smollm2.{t.name}": torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float()
            for t in reader.tensors if t.name in names}


@pytest.fixture(scope="module")
def real_weights():
    return {"minilm.q": minilm_weight(), "minilm.ffn_out": minilm_weight("encoder.layer.3.output.dense"),
            **smollm2_weights("blk.5.ffn_down.weight", "blk.11.attn_v.weight")}


def edge_weight() -> torch.Tensor:
    """Rows of 64: zeros, -0, equal values, element-subnormal values, huge and tiny blocks (E8M0 codes >= 1)."""
    torch.manual_seed(0)
    rows = [torch.zeros(64), -torch.zeros(64), torch.full((64,), 0.3), torch.full((64,), -7.0),
            torch.cat([torch.tensor([1.0]), torch.randn(31) * 1e-3, torch.tensor([-1.0]), torch.randn(31) * 0.05]),
            torch.randn(64) * 1e37, torch.randn(64) * 1e-30, torch.randn(64) * 1e-33,
            torch.tensor([2.0 ** k for k in range(-20, 12)] * 2), torch.randn(64).clamp(-1, 1).sign() * 0.75]
    W = torch.stack(rows)  # (10, 64)
    W[4, 5] = -0.0
    return W


def test_element_values_derived_from_the_bits():
    assert mx.E2M1.magnitudes().tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]  # the OCP MX spec's table
    for fmt, largest, emax, bias in [(mx.E2M1, ao.F4_E2M1_MAX, 2, ao.F4_E2M1_EXP_BIAS),
                                     (mx.E2M3, ao.F6_E2M3_MAX, 2, ao.F6_E2M3_EXP_BIAS),
                                     (mx.E3M2, ao.F6_E3M2_MAX, 4, ao.F6_E3M2_EXP_BIAS)]:
        assert (fmt.max, fmt.emax, fmt.bias) == (largest, emax, bias)
        assert torch.isfinite(fmt.code_values()).all()  # no inf / NaN codes in the FP6 / FP4 elements
    assert mx.E2M3.magnitudes()[1] == 0.125 and mx.E3M2.magnitudes()[1] == 0.0625  # smallest subnormals
    for fmt, to_f32 in [(mx.E2M1, f4_unpacked_to_f32), (mx.E2M3, f6_e2m3_unpacked_to_f32),
                        (mx.E3M2, f6_e3m2_unpacked_to_f32)]:
        codes = torch.arange(2 ** fmt.bits, dtype=torch.uint8)
        assert torch.equal(mx.decode(codes, fmt), to_f32(codes))  # torchao's bit decoder, every code


def test_e8m0_scale_and_decode():
    codes = torch.arange(255, dtype=torch.uint8)
    assert torch.equal(mx.e8m0_decode(codes), codes.view(torch.float8_e8m0fnu).float())  # torch's own E8M0
    amax = torch.tensor([1.0, 1.5, 7.99, 8.0, 0.0, 1e-45, 3e38])
    expected = (torch.floor(torch.log2(amax.double())) - 2).clamp(-127, 127) + 127
    assert mx.e8m0_scale(amax, 2).tolist() == expected.tolist()[:4] + [0, 0, expected[-1].item()]


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_pack_unpack_round_trip_and_fp6_layout(bits):
    codes = torch.randint(0, 2 ** bits, (5, 64), dtype=torch.uint8)
    packed = mx.pack(codes, bits)
    assert packed.shape == (5, 64 * bits // 8) and torch.equal(mx.unpack(packed, bits), codes)
    if bits == 6:  # c0 = 0b000001, c1 = 0b000010, c2 = 0b000011, c3 = 0b111111, little-endian bit order
        assert mx.pack(torch.tensor([[1, 2, 3, 63]], dtype=torch.uint8), 6).tolist() == [[0b10000001, 0b00110000,
                                                                                          0b11111100]]


def _check_mx_against_torchao(W, format):
    ref = MXTensor.to_mx(W, ELEMENTS[format], 32)
    qw = mx.quantize_weight(W, format=format)
    assert torch.equal(qw.scale, ref.scale.view(torch.uint8))
    ref_codes = ref.qdata.view(torch.uint8)
    assert torch.equal(qw.W_q if format == "mxfp4" else qw.codes(), ref_codes)  # FP6: torchao keeps one per byte
    assert torch.equal(qw.dequantize(), ref.dequantize(torch.float32))


def _check_nvfp4_against_torchao(W):
    ref = NVFP4Tensor.to_nvfp4(W, 16, per_tensor_scale=per_tensor_amax_to_scale(W.abs().amax()))
    qw = mx.quantize_weight(W, format="nvfp4")
    assert torch.equal(qw.scale.view(torch.uint8), ref.scale.view(torch.uint8))
    assert torch.equal(qw.W_q, ref.qdata.view(torch.uint8))
    assert torch.equal(qw.dequantize(), ref.dequantize(torch.float32))


@pytest.mark.parametrize("format", list(ELEMENTS) + ["nvfp4"])
def test_equals_torchao_bit_for_bit_on_real_weights(format, real_weights):
    for W in real_weights.values():
        if format == "nvfp4":
            _check_nvfp4_against_torchao(W)
        else:
            _check_mx_against_torchao(W, format)


@pytest.mark.parametrize("format", list(ELEMENTS) + ["nvfp4"])
def test_equals_torchao_bit_for_bit_on_edge_cases(format):
    W = edge_weight()
    for part in (W, W[:5]):  # NVFP4: without the 1e37 row, t no longer crushes the small rows
        _check_nvfp4_against_torchao(part) if format == "nvfp4" else _check_mx_against_torchao(part, format)
    W_hat = mx.quantize_weight(W[:5], format=format).dequantize()
    assert (W_hat[:2] == 0).all() and torch.isfinite(W_hat).all()
    assert (W_hat[2] == W_hat[2, 0]).all() and (W_hat[3] == W_hat[3, 0]).all()  # equal in, equal out, ...
    assert W_hat[2, 0] > 0 > W_hat[3, 0] and W_hat[2, 0] != W[2, 0]  # ... not exact: 0.3 is on no grid here
    if format == "nvfp4":  # one float32 t per tensor: block scales below t * 2^-6 (E4M3's smallest normal) vanish
        assert (mx.quantize_weight(W, format=format).dequantize()[6:8] == 0).all()


def test_where_torchao_departs_from_the_spec():
    # E8M0 code 0 (2^-127): torchao divides by 2^-126 but multiplies back by 2^-127, halving the block.
    W = torch.full((1, 32), 3 * 2.0 ** -126)
    qw = mx.quantize_weight(W, format="mxfp4")
    assert qw.scale.item() == 0 and torch.equal(qw.dequantize(), W)  # 6 * 2^-127, exact
    assert torch.equal(MXTensor.to_mx(W, torch.float4_e2m1fn_x2, 32).dequantize(torch.float32), W / 2)
    # An all-zero tensor: torchao's NVFP4 tensor scale is 0 (NaN everywhere); here t = 1 and the codes are 0.
    Z = torch.zeros(2, 32)
    assert torch.equal(mx.quantize_weight(Z, format="nvfp4").dequantize(), Z)
    assert torch.isnan(NVFP4Tensor.to_nvfp4(Z, 16, per_tensor_scale=torch.tensor(0.0)).dequantize()).all()


def test_bits_per_weight_counted_from_the_bytes():
    W = minilm_weight()  # (384, 384)
    bpw = {f: mx.quantize_weight(W, format=f).bits_per_weight for f in mx.FORMATS}
    assert bpw["mxfp8_e4m3"] == bpw["mxfp8_e5m2"] == 8.25 and bpw["mxfp6_e2m3"] == bpw["mxfp6_e3m2"] == 6.25
    assert bpw["mxfp4"] == 4.25 and bpw["nvfp4"] == 4.5 + 32 / W.numel()


def test_mxfp4_bytes_against_gguf(real_weights):
    for name, W in real_weights.items():
        qw = mx.quantize_weight(W, format="mxfp4")
        ours = mx.to_gguf_mxfp4(qw).reshape(-1, 17)  # (blocks, 17)
        theirs = torch.from_numpy(gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.MXFP4)).reshape(-1, 17)
        assert torch.equal(ours[:, 0], theirs[:, 0]), name  # the E8M0 bytes
        q = torch.stack([ours[:, 1:] & 15, ours[:, 1:] >> 4], -1)  # (blocks, 16, 2) our nibbles
        g = torch.stack([theirs[:, 1:] & 15, theirs[:, 1:] >> 4], -1)
        x = (W.reshape(-1, 2, 16).transpose(1, 2) / mx.e8m0_decode(ours[:, 0])[:, None, None]).abs()  # (blocks, 16, 2)
        ties = torch.isin(x.double(), (mx.E2M1.magnitudes()[:-1] + mx.E2M1.magnitudes()[1:]) / 2)
        negative_zero = (q == 8) & (g == 0)
        tie_down = ties & ((q & 7) == (g & 7) + 1) & ((q & 8) == (g & 8))  # gguf: the smaller magnitude
        assert ((q == g) | negative_zero | tie_down).all(), name
        if name.startswith("smollm2"):  # Q4_1 weights sit on a grid: exact ties do occur there
            assert tie_down.any()
    # The E8M0 rule: log2f(amax) in float32 rounds 8 - 2^-21 up to 3, so gguf's scale is twice ours.
    W = torch.full((1, 32), 8 - 2.0 ** -21)
    theirs = gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.MXFP4)
    assert mx.quantize_weight(W, format="mxfp4").scale.item() == 127 and theirs[0, 0] == 128


def test_mx_layer_model_level_and_save_load(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32))
    x = torch.randn(4, 64)
    ref = model(x).detach()
    errors = {}
    for format in ("mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "nvfp4"):
        m = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32))
        m.load_state_dict(model.state_dict())
        report = qlearn.quantize_model(m, method="mx", format=format)
        layer = m[0]
        assert type(layer).__name__ == "MXLinear" and layer.weight_q.dtype == torch.uint8
        assert torch.equal(layer(x), x @ layer.quantized_weight().dequantize().T + layer.bias)
        assert report.bytes_after < report.bytes_before
        errors[format] = float((m(x).detach() - ref).norm() / ref.norm())
        save_quantized(m, tmp_path / f"{format}.safetensors")
        with torch.device("meta"):
            skeleton = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 32))
        assert torch.equal(load_quantized(skeleton, tmp_path / f"{format}.safetensors")(x), m(x))
    assert max(errors["mxfp8_e4m3"], errors["mxfp6_e2m3"], errors["nvfp4"]) < errors["mxfp4"] < 0.2
    fp8_model = nn.Sequential(nn.Linear(64, 96))
    qlearn.quantize_model(fp8_model, method="mx", format="fp8_e4m3")
    assert type(fp8_model[0]).__name__ == "FP8Linear"
    with pytest.raises(ValueError, match="fixes its own bits"):
        qlearn.quantize_model(nn.Sequential(nn.Linear(64, 96)), method="mx", format="mxfp4", bits=6)
    with pytest.raises(ValueError, match="divisible by 32"):
        mx.quantize_weight(torch.randn(4, 48), format="mxfp4")


@pytest.mark.real_llm
def test_smollm2_perplexity_in_mxfp8(llm_cache):
    model, tokenizer = llm.load_llm(progress=False)
    text = llm.course_text("eval")[:800]
    base = metrics.perplexity(model, tokenizer, text, window=256, progress=False)
    qlearn.quantize_model(model, method="mx", format="mxfp8_e4m3", exclude=["lm_head"])
    ppl8 = metrics.perplexity(model, tokenizer, text, window=256, progress=False)
    assert base < ppl8 < base * 1.05  # 8-bit floats with block scales: nearly lossless
