"""The fast paths agree with the reference (dequantize-then-matmul) path within their documented tolerance, and
each kind of input (device, dtype, needs-grad) gets the right one."""

import pytest
import torch
from torch import nn

from qlearn import PerChannel, PerGroup, PerTensor, PerToken, QuantLinear
from qlearn.core.primitives import QParams, qrange, quantize
from qlearn.inference import kernels

BF16_TOL = 1e-2  # relative error of the bfloat16 kernels (8 significant bits)
W8A8_TOL = 1e-5  # exact int32 accumulation, float32 rounding only


def _linear(in_features=256, out_features=64, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


FAST = [
    ("int4_cpu", dict(bits=4, granularity=PerGroup(32), symmetric=False), BF16_TOL),
    ("int4_cpu", dict(bits=4, granularity=PerGroup(128), symmetric=True), BF16_TOL),
    ("int4_cpu", dict(bits=2, granularity=PerGroup(64), symmetric=False), BF16_TOL),
    ("int4_cpu", dict(bits=3, granularity=PerGroup(256), symmetric=False), BF16_TOL),
    ("int8_cpu", dict(bits=8, granularity=PerChannel(0)), BF16_TOL),
    ("w8a8", dict(bits=8, granularity=PerChannel(0), activations=8), W8A8_TOL),
    ("w8a8", dict(bits=8, granularity=PerChannel(0), activations=7), W8A8_TOL),
    ("w8a8", dict(bits=6, granularity=PerChannel(0), activations=4), W8A8_TOL),
]


FAST_IDS = [f"{n}-{k['bits']}bit-{k['granularity']}-a{k.get('activations')}" for n, k, _ in FAST]
SOME_IDS = FAST_IDS[::2]


@pytest.mark.parametrize("tokens", [1, 3, 64], ids=lambda t: f"tokens{t}")
@pytest.mark.parametrize("name,kwargs,tol", FAST, ids=FAST_IDS)
def test_fast_path_matches_reference(name, kwargs, tol, tokens):
    lin = _linear()
    fast = QuantLinear.from_linear(lin, kernel="auto", **kwargs)
    ref = QuantLinear.from_linear(lin, kernel="reference", **kwargs)
    x = torch.randn(tokens, 256)
    assert kernels.select_name(fast, x) == name and kernels.select(fast, x) is kernels.choose(fast, x).forward
    with torch.no_grad():
        y_fast, y_ref = fast(x), ref(x)
        assert fast._cache[(x.device, x.dtype, False)].name == name  # the path the layer really took
        assert torch.equal(fast(x), y_fast)  # the kept choice runs the same kernel again
    assert y_fast.dtype == x.dtype and y_fast.shape == y_ref.shape
    assert _rel(y_fast, y_ref) < tol


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name,kwargs,tol", FAST[::2], ids=SOME_IDS)
def test_half_inputs_take_the_fast_path_too(name, kwargs, tol, dtype):
    lin = _linear()
    fast = QuantLinear.from_linear(lin, kernel="auto", **kwargs)
    ref = QuantLinear.from_linear(lin, kernel="reference", **kwargs)
    x = torch.randn(5, 256).to(dtype)
    with torch.no_grad():
        y = fast(x)
        assert fast._cache[(x.device, dtype, False)].name == name and y.dtype == dtype
        assert _rel(y, ref(x.float())) < 2 * BF16_TOL  # the input itself carries 8 (bf16) or 11 (fp16) bits


@pytest.mark.parametrize("name,kwargs,tol", FAST[::2], ids=SOME_IDS)
def test_an_input_that_needs_grad_takes_the_reference_path_between_fast_calls(name, kwargs, tol):
    layer = QuantLinear.from_linear(_linear(), **kwargs)
    x = torch.randn(3, 256)
    with torch.no_grad():
        y_fast = layer(x)
    xg = x.clone().requires_grad_()
    y = layer(xg)
    y.sum().backward()
    xr = x.clone().requires_grad_()
    layer.reference_forward(xr).sum().backward()
    assert torch.equal(y, layer.reference_forward(x)) and torch.equal(xg.grad, xr.grad)
    assert layer._cache[(x.device, x.dtype, True)].name == "reference"
    with torch.no_grad():
        assert torch.equal(layer(x), y_fast) and layer._cache[(x.device, x.dtype, False)].name == name


def test_a_layer_moved_to_float64_takes_the_reference_path():
    layer = QuantLinear.from_linear(_linear(), bits=4, granularity=PerGroup(32))
    x = torch.randn(3, 256)
    with torch.no_grad():
        layer(x)
        layer.double()
        assert layer._cache is None
        x64 = x.double()
        y = layer(x64)
    assert kernels.select_name(layer, x64) == "reference" and y.dtype == torch.float64
    assert torch.equal(y, layer.reference_forward(x64))


def test_a_layer_moved_to_bfloat16_runs_its_kernel_on_the_new_weights():
    layer = QuantLinear.from_linear(_linear(), bits=8)
    x = torch.randn(3, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        layer(x)
        layer.to(torch.bfloat16)
        y = layer(x)
        assert layer._cache[(x.device, x.dtype, False)].name == "int8_cpu" and layer.scale.dtype == torch.bfloat16
        assert _rel(y, layer.reference_forward(x)) < 2 * BF16_TOL


def test_empty_input_takes_the_reference_path():
    layer = QuantLinear.from_linear(_linear(), bits=4, granularity=PerGroup(32))
    x = torch.randn(0, 256)
    assert kernels.select_name(layer, x) == "reference" and kernels.select(layer, x) is None
    assert layer(x).shape == (0, 64)


@pytest.mark.parametrize("fn", ["choose", "select", "select_name"])
def test_choice_needs_a_quantized_layer_and_a_tensor(fn):
    with pytest.raises(TypeError, match=f"{fn} needs a quantized linear layer"):
        getattr(kernels, fn)(nn.Linear(4, 4), torch.randn(1, 4))
    with pytest.raises(TypeError, match="input tensor"):
        getattr(kernels, fn)(QuantLinear(4, 4), [[1.0] * 4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_layer_moved_to_cuda_chooses_for_cuda():
    """On CUDA only w8a8 has a kernel, and torch._int_mm wants more than 16 tokens."""
    w8a8 = QuantLinear.from_linear(_linear(), bits=8, activations=8)
    int4 = QuantLinear.from_linear(_linear(), bits=4, granularity=PerGroup(32))
    with torch.no_grad():
        w8a8(torch.randn(32, 256)), int4(torch.randn(32, 256))  # CPU choices, then the move drops them
        w8a8.cuda(), int4.cuda()
        for tokens, name in ((32, "w8a8"), (4, "reference")):
            x = torch.randn(tokens, 256, device="cuda")
            assert kernels.select_name(w8a8, x) == name
            y = w8a8(x)
            assert w8a8._cache[(x.device, x.dtype, False)].name == "w8a8"
            assert _rel(y, w8a8.reference_forward(x)) < W8A8_TOL
            assert kernels.select_name(int4, x) == "reference" and torch.equal(int4(x), int4.reference_forward(x))


def test_fast_path_keeps_leading_dims_and_input_dtype():
    layer = QuantLinear.from_linear(_linear(), bits=4, granularity=PerGroup(64))
    x = torch.randn(2, 5, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (2, 5, 64) and y.dtype == torch.bfloat16


@pytest.mark.parametrize("kwargs", [dict(bits=4, granularity=PerGroup(16)), dict(bits=8, granularity=PerTensor()),
                                    dict(bits=8, symmetric=False), dict(bits=4, granularity=PerChannel(0)),
                                    dict(bits=8, kernel="reference")],
                         ids=["group16", "per-tensor", "asymmetric-int8", "int4-per-channel", "forced-reference"])
def test_no_fast_path_falls_back_to_reference(kwargs):
    layer = QuantLinear.from_linear(_linear(), **kwargs)
    x = torch.randn(3, 256)
    assert kernels.select_name(layer, x) == "reference"
    assert torch.equal(layer(x), layer.reference_forward(x))


def test_input_needing_gradient_takes_reference_path():
    layer = QuantLinear.from_linear(_linear(), bits=4, granularity=PerGroup(32))
    x = torch.randn(3, 256, requires_grad=True)
    assert kernels.select_name(layer, x) == "reference"
    layer(x).sum().backward()
    assert x.grad is not None


def test_out_features_not_multiple_of_16_skips_int4_kernel():
    layer = QuantLinear.from_linear(_linear(out_features=40), bits=4, granularity=PerGroup(32))
    assert kernels.select_name(layer, torch.randn(1, 256)) == "reference"


def test_new_weights_rebuild_the_kernel_cache():
    a, b = _linear(seed=0), _linear(seed=1)
    layer = QuantLinear.from_linear(a, bits=4, granularity=PerGroup(32))
    x = torch.randn(2, 256)
    with torch.no_grad():
        layer(x)
        layer.load_state_dict(QuantLinear.from_linear(b, bits=4, granularity=PerGroup(32)).state_dict())
        assert _rel(layer(x), layer.reference_forward(x)) < BF16_TOL


@pytest.mark.skipif(kernels._int_mm_fast(torch.zeros(1)) or not kernels._fbgemm_available(),
                    reason="the fbgemm path runs only on x86 CPUs without VNNI")
@pytest.mark.parametrize("act_bits", [8, 7], ids=["a8-two-passes", "a7-one-pass"])
def test_fbgemm_w8a8_is_exact_even_at_saturating_codes(act_bits):
    """Oracle: an int64 matmul. Codes at the ends of the range would saturate fbgemm's int16 pair sums."""
    torch.manual_seed(0)
    out_features, in_features = 32, 512
    a_min, a_max = qrange(act_bits)
    W_q = torch.randint(-127, 128, (out_features, in_features), dtype=torch.int8)
    W_q[0], W_q[1] = 127, -127
    X_q = torch.randint(a_min, a_max + 1, (4, in_features), dtype=torch.int8)
    X_q[0], X_q[1] = a_max, a_min
    layer = QuantLinear(in_features, out_features, bits=8, activations=act_bits, bias=False)
    qmin, qmax = qrange(8)
    ones = QParams(torch.ones(out_features, 1), torch.zeros(out_features, 1, dtype=torch.int32), 8, True,
                   qmin, qmax, PerChannel(0))
    layer.set_weight(W_q, ones)
    exact = X_q.long() @ W_q.long().T  # (4, out)
    assert torch.equal(kernels._w8a8_fbgemm(layer, X_q, act_bits), exact.float())


ACTIVATION_CASES = [(bits, static) for bits in (8, 7, 4) for static in (False, True)]


@pytest.mark.parametrize("bits,static", ACTIVATION_CASES,
                         ids=[f"a{b}-{'static' if s else 'per-token'}" for b, s in ACTIVATION_CASES])
def test_w8a8_activation_codes_equal_quantize_bit_for_bit(bits, static):
    """Oracle: core.primitives.quantize with the layer's own input_qparams, on ties, clipped values and -0.0."""
    lin = _linear()
    lin.register_buffer("smooth_input_scale", torch.rand(256) + 0.5)  # SmoothQuant's run-time 1/s
    layer = QuantLinear.from_linear(lin, activations=bits,
                                    activation_granularity=PerTensor() if static else PerToken())
    if static:
        layer.set_activation_scale(0.01)
    x = torch.randn(2, 5, 256)
    x[0, 0] = torch.arange(256) * 0.5 - 64  # halves: the ties of round()
    x[0, 1, :3] = torch.tensor([1e4, -1e4, -0.0])  # clipped (static), and a negative zero
    X_q, s_x = kernels._activation_codes(layer, x)
    x2 = layer.activation_input(x.reshape(-1, 256))  # (tokens, in)
    qp = layer.input_qparams(x2)
    assert torch.equal(X_q, quantize(x2, qp)) and X_q.dtype == torch.int8 and torch.equal(s_x, qp.scale)


@pytest.mark.parametrize("static", [False, True], ids=["per-token", "static"])
def test_w8a8_fast_path_builds_no_qparams_and_refuses_non_finite_input(static, monkeypatch):
    """QParams checks its scale on the host (five reads of the device) each time one is built."""
    layer = QuantLinear.from_linear(_linear(), activations=8,
                                    activation_granularity=PerTensor() if static else PerToken())
    if static:
        layer.set_activation_scale(0.02)
    x = torch.randn(4, 256)
    with torch.no_grad():
        y = layer(x)
        built = []
        check = QParams.__post_init__
        monkeypatch.setattr(QParams, "__post_init__", lambda self: built.append(1) or check(self))
        for _ in range(3):
            assert torch.equal(layer(x), y)
        assert not built and kernels.select_name(layer, x) == "w8a8"
        x[1, 7] = float("nan")
        with pytest.raises(ValueError, match="NaN or inf"):
            layer(x)
