"""W8A8 with static per-tensor activations: the formula, the fast path, the clear error, save/load, the probe."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qlearn import PerChannel, PerTensor, PerToken, QuantLinear, fake_quantize, model_size_bytes
from qlearn.inference import kernels
from qlearn.inference.serialize import load_quantized, save_quantized

W8A8_TOL = 1e-5  # exact int32 accumulation, float32 rounding only


def _static(seed=0, in_features=256, out_features=64, bits=8, kernel="auto", scale=None):
    torch.manual_seed(seed)
    lin = nn.Linear(in_features, out_features)
    layer = QuantLinear.from_linear(lin, activations=bits, activation_granularity=PerTensor(), kernel=kernel)
    if scale is not None:
        layer.set_activation_scale(scale)
    return lin, layer


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("kernel", ["auto", "reference"])
def test_uncalibrated_layer_fails_clearly(kernel):
    _, layer = _static(kernel=kernel)
    assert not layer.calibrated
    with pytest.raises(ValueError, match="calibrate_activations"):
        layer(torch.randn(3, 256))


@pytest.mark.parametrize("bits", [8, 6], ids=["a8", "a6"])
def test_reference_is_the_static_formula_and_clips_outside_the_range(bits):
    s_x = 0.02
    lin, layer = _static(bits=bits, kernel="reference", scale=s_x)
    x = torch.randn(5, 256)
    x[0, 0] = 100.0  # far outside s_x * qmax: clipped
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    X_hat = s_x * torch.clamp(torch.round(x / s_x), qmin, qmax)  # (5, 256)
    want = F.linear(X_hat, layer.dequantized_weight(), lin.bias)
    torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
    assert layer.calibrated


@pytest.mark.parametrize("tokens", [1, 7, 64], ids=lambda t: f"tokens{t}")
@pytest.mark.parametrize("bits", [8, 7], ids=["a8", "a7"])
def test_fast_path_matches_reference(tokens, bits):
    _, fast = _static(bits=bits, scale=0.03)
    _, ref = _static(bits=bits, kernel="reference", scale=0.03)
    x = torch.randn(2, tokens, 256)
    assert kernels.select_name(fast, x) == "w8a8"
    with torch.no_grad():
        y_fast, y_ref = fast(x), ref(x)
    assert y_fast.shape == (2, tokens, 64)
    assert _rel(y_fast, y_ref) < W8A8_TOL


def test_static_differs_from_per_token_and_per_token_is_unchanged():
    lin, static = _static(kernel="reference", scale=0.05)
    dynamic = QuantLinear.from_linear(lin, activations=8, kernel="reference")
    x = torch.randn(4, 256) * torch.tensor([[0.1], [1.0], [3.0], [0.5]])  # (4, 256): tokens of very different size
    want = F.linear(fake_quantize(x, 8, symmetric=True, granularity=PerToken()), dynamic.dequantized_weight(), lin.bias)
    torch.testing.assert_close(dynamic(x), want)
    assert not torch.allclose(static(x), dynamic(x), rtol=1e-3, atol=1e-3)


def test_smooth_input_scale_is_applied_before_quantizing():
    torch.manual_seed(1)
    lin = nn.Linear(32, 16)
    m = torch.rand(32) + 0.5  # (in,)
    lin.register_buffer("smooth_input_scale", m)
    layer = QuantLinear.from_linear(lin, activations=8, activation_granularity=PerTensor(), kernel="reference")
    layer.set_activation_scale(0.01)
    x = torch.randn(3, 32)
    want = F.linear(fake_quantize(x * m, qparams=layer.input_qparams(x * m)), layer.dequantized_weight(), lin.bias)
    torch.testing.assert_close(layer(x), want)
    assert torch.equal(layer.smooth_input_scale, m)


def test_save_load_keeps_the_scales_and_counts_their_bytes(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    model[0].register_buffer("smooth_input_scale", torch.rand(64) + 0.5)
    skeleton = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    plain = QuantLinear.from_linear(model[2], activations=8)
    for i in (0, 2):
        model[i] = QuantLinear.from_linear(model[i], activations=8, activation_granularity=PerTensor())
        model[i].set_activation_scale(0.01 * (i + 1))
    assert model_size_bytes(model[2]) == model_size_bytes(plain) + 4  # one float32 scale
    save_quantized(model, tmp_path / "m.safetensors")
    loaded = load_quantized(skeleton, tmp_path / "m.safetensors")
    assert loaded[0].static_activations and loaded[0].calibrated
    assert torch.equal(loaded[0].activation_scale, model[0].activation_scale)
    assert torch.equal(loaded[0].smooth_input_scale, model[0].smooth_input_scale)
    x = torch.randn(5, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("scale,err", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                       (torch.ones(2), ValueError)], ids=["zero", "negative", "nan", "two"])
def test_bad_activation_scale(scale, err):
    _, layer = _static()
    with pytest.raises(err):
        layer.set_activation_scale(scale)


def test_bad_activation_granularity_and_misuse():
    with pytest.raises(ValueError, match="activation_granularity"):
        QuantLinear(8, 4, activations=8, activation_granularity=PerChannel(0))
    with pytest.raises(ValueError, match="static activations"):
        QuantLinear(8, 4, activations=8).set_activation_scale(0.1)
    with pytest.raises(TypeError):
        QuantLinear(8, 4, smooth_input=1)


@pytest.mark.parametrize("isa", ["AVX2", "SSE41"], ids=["avx2", "sse41"])
def test_w8a8_fast_path_is_exact_under_isa_without_vnni(isa):
    """oneDNN's int8 GEMM without VNNI saturates int16 pair sums; the probe must notice and the fast path stay
    exact. ONEDNN_MAX_CPU_ISA is read once per process, so the check runs in a fresh interpreter."""
    code = (
        "import torch; from torch import nn\n"
        "from qlearn import QuantLinear, PerTensor\n"
        "from qlearn.inference import kernels\n"
        "torch.manual_seed(0)\n"
        "lin = nn.Linear(384, 48); lin.weight.data[:, :64] = 1.0\n"
        "for kw in ({}, {'activation_granularity': PerTensor()}):\n"
        "    fast = QuantLinear.from_linear(lin, activations=8, **kw)\n"
        "    ref = QuantLinear.from_linear(lin, activations=8, kernel='reference', **kw)\n"
        "    if kw: fast.set_activation_scale(1 / 127); ref.set_activation_scale(1 / 127)\n"
        "    x = torch.randn(33, 384); x[:, :64] = 1.0\n"
        "    assert kernels.select_name(fast, x) == 'w8a8'\n"
        "    err = float((fast(x) - ref(x)).norm() / ref(x).norm())\n"
        "    assert err < 1e-5, (kw, err, kernels.int_mm_is_exact('cpu'))\n"
    )
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_probe_rejects_unknown_devices():
    with pytest.raises(ValueError, match="device_type"):
        kernels.int_mm_is_exact("tpu")
