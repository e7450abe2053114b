"""The fast paths agree with the reference (dequantize-then-matmul) path within their documented tolerance."""

import pytest
import torch
from torch import nn

from qlearn import PerChannel, PerGroup, PerTensor, QuantLinear
from qlearn.inference import kernels
from qlearn.core.primitives import QParams, qrange

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


@pytest.mark.parametrize("tokens", [1, 3, 64], ids=lambda t: f"tokens{t}")
@pytest.mark.parametrize("name,kwargs,tol", FAST, ids=[f"{n}-{k['bits']}bit-{k['granularity']}-a{k.get('activations')}" for n, k, _ in FAST])
def test_fast_path_matches_reference(name, kwargs, tol, tokens):
    lin = _linear()
    fast = QuantLinear.from_linear(lin, kernel="auto", **kwargs)
    ref = QuantLinear.from_linear(lin, kernel="reference", **kwargs)
    x = torch.randn(tokens, 256)
    assert kernels.select_name(fast, x) == name
    with torch.no_grad():
        y_fast, y_ref = fast(x), ref(x)
    assert y_fast.dtype == x.dtype and y_fast.shape == y_ref.shape
    assert _rel(y_fast, y_ref) < tol


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
