"""quantize / dequantize / choose_qparams / fake_quantize: oracles, properties and bad inputs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qlearn
from qlearn import PerChannel, PerGroup, PerTensor, PerToken, QParams
from tests.conftest import DEVICES

GRANULARITIES = [PerTensor(), PerChannel(0), PerChannel(1), PerChannel(-1), PerGroup(16), PerToken()]
GIDS = ["tensor", "channel0", "channel1", "channel-1", "group16", "token"]


def roundtrip(x, **kw):
    qp = qlearn.choose_qparams(x, **kw)
    return qp, qlearn.dequantize(qlearn.quantize(x, qp), qp)


# ---- oracles: PyTorch's own quantize ops ------------------------------------------------------------

def test_matches_torch_quantize_per_tensor_asymmetric():
    x = torch.randn(64, 48) * 3 + 1
    qp = qlearn.choose_qparams(x, bits=8, symmetric=False)
    obs = torch.ao.quantization.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    obs(x)
    t_scale, t_zp = obs.calculate_qparams()
    assert torch.allclose(qp.scale.flatten(), t_scale, rtol=1e-6)
    assert int(qp.zero_point) == int(t_zp)
    ref = torch.quantize_per_tensor(x, float(qp.scale), int(qp.zero_point), torch.qint8)
    assert torch.equal(qlearn.quantize(x, qp), ref.int_repr())
    assert torch.allclose(qlearn.dequantize(qlearn.quantize(x, qp), qp), ref.dequantize())


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "asymmetric"])
@pytest.mark.parametrize("axis", [0, 1], ids=["axis0", "axis1"])
def test_matches_torch_quantize_per_channel(symmetric, axis):
    x = torch.randn(32, 40) * torch.linspace(0.1, 5, 40)
    qp = qlearn.choose_qparams(x, bits=8, symmetric=symmetric, granularity=PerChannel(axis))
    ref = torch.quantize_per_channel(x, qp.scale.flatten().double(), qp.zero_point.flatten().long(), axis, torch.qint8)
    assert torch.equal(qlearn.quantize(x, qp), ref.int_repr())
    assert torch.allclose(qlearn.dequantize(qlearn.quantize(x, qp), qp), ref.dequantize())


def test_per_group_equals_per_channel_on_reshaped_tensor():
    """PerGroup(g) on (out, in) is PerChannel(0) on the (out * in / g, g) view: an independent path."""
    x = torch.randn(12, 64)
    qp_g, xg = roundtrip(x, bits=4, granularity=PerGroup(16))
    qp_c, xc = roundtrip(x.reshape(-1, 16), bits=4, granularity=PerChannel(0))
    assert torch.equal(xg, xc.reshape(12, 64))
    assert torch.equal(qp_g.scale.flatten(), qp_c.scale.flatten())


# ---- properties ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("granularity", GRANULARITIES, ids=GIDS)
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("bits", range(2, 9))
def test_roundtrip_error_within_half_step(bits, symmetric, granularity, device):
    x = torch.randn(8, 32, device=device) * 2
    qp, x_hat = roundtrip(x, bits=bits, symmetric=symmetric, granularity=granularity)
    q = qlearn.quantize(x, qp)
    assert q.dtype == torch.int8 and q.device == x.device and x_hat.shape == x.shape and x_hat.dtype == x.dtype
    assert int(q.min()) >= qp.qmin and int(q.max()) <= qp.qmax
    step = granularity.to_blocks(torch.ones_like(x)) * qp.scale.to(device)  # scale per element, block view
    err = granularity.to_blocks(x - x_hat).abs()
    assert bool((err <= step / 2 * (1 + 1e-5) + 1e-7).all())


floats = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=64), bits=st.integers(2, 8), symmetric=st.booleans())
def test_property_roundtrip_and_idempotence(values, bits, symmetric):
    x = torch.tensor(values, dtype=torch.float32)
    qp, x_hat = roundtrip(x, bits=bits, symmetric=symmetric)
    assert bool(torch.isfinite(x_hat).all())
    assert float((x - x_hat).abs().max()) <= float(qp.scale) / 2 * (1 + 1e-5) + 1e-6 * float(x.abs().max())
    q = qlearn.quantize(x, qp)
    assert torch.equal(qlearn.quantize(qlearn.dequantize(q, qp), qp), q)


@settings(max_examples=30, deadline=None)
@given(value=floats, shape=st.sampled_from([(1,), (3, 4), (2, 8)]), symmetric=st.booleans(),
       bits=st.integers(2, 8), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_constant_tensor_roundtrips_exactly(value, shape, symmetric, bits, dtype):
    x = torch.full(shape, value, dtype=dtype)
    for granularity in (PerTensor(), PerChannel(0), PerGroup(shape[-1])):
        qp, x_hat = roundtrip(x, bits=bits, symmetric=symmetric, granularity=granularity)
        assert torch.equal(x_hat, x), (value, granularity)


def test_zero_is_exactly_representable_asymmetric():
    x = torch.rand(100) * 5 + 1  # all positive: zero lies outside the data
    qp, _ = roundtrip(x, bits=4, symmetric=False)
    zero_hat = qlearn.dequantize(qlearn.quantize(torch.zeros(1), qp), qp)
    assert float(zero_hat) == 0.0


def test_dtype_is_kept():
    x = torch.randn(4, 8).to(torch.bfloat16)
    qp, x_hat = roundtrip(x, bits=8, granularity=PerChannel(0))
    assert x_hat.dtype == torch.bfloat16 and qp.scale.dtype == torch.float32


def test_more_bits_less_error():
    x = torch.randn(64, 64)
    errors = [qlearn.core.metrics.mse(x, roundtrip(x, bits=b)[1]) for b in range(2, 9)]
    assert errors == sorted(errors, reverse=True)


# ---- the straight-through estimator ----------------------------------------------------------------------

def test_ste_gradient_is_identity_inside_and_zero_outside():
    x = torch.linspace(-3, 3, 61, requires_grad=True)
    qp = qlearn.choose_qparams(torch.tensor([-1.0, 1.0]), bits=4, symmetric=True)  # range [-1, 1] (+ half a step)
    y = qlearn.fake_quantize(x, qparams=qp)
    y.backward(torch.ones_like(y))
    raw = torch.round(x.detach() / qp.scale.flatten()) + qp.zero_point.flatten()
    inside = (raw >= qp.qmin) & (raw <= qp.qmax)
    assert torch.equal(x.grad, inside.float())
    assert 0 < int(inside.sum()) < x.numel()
    assert torch.equal(y.detach(), qlearn.dequantize(qlearn.quantize(x.detach(), qp), qp))


@pytest.mark.parametrize("granularity", [PerTensor(), PerChannel(0), PerGroup(8)], ids=["tensor", "channel", "group"])
def test_fake_quantize_forward_equals_roundtrip(granularity):
    x = torch.randn(4, 16, requires_grad=True)
    y = qlearn.fake_quantize(x, bits=3, granularity=granularity)
    qp, x_hat = roundtrip(x.detach(), bits=3, granularity=granularity)
    assert torch.equal(y.detach(), x_hat)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # own min-max range: nothing is clamped


# ---- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 9, 0, -3, 16], ids=str)
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits must be from 2 to 8"):
        qlearn.choose_qparams(torch.randn(4), bits=bits)
    with pytest.raises(ValueError, match="bits"):
        qlearn.fake_quantize(torch.randn(4), bits=bits)


@pytest.mark.parametrize("bits", [8.0, "8", True, None], ids=repr)
def test_bits_wrong_type(bits):
    with pytest.raises(TypeError, match="bits must be an int"):
        qlearn.choose_qparams(torch.randn(4), bits=bits)


@pytest.mark.parametrize("x", [torch.arange(6), torch.ones(3, dtype=torch.bool), [1.0, 2.0], 3.0],
                         ids=["int", "bool", "list", "float"])
def test_non_float_input(x):
    with pytest.raises(TypeError):
        qlearn.choose_qparams(x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_nan_inf_rejected(bad):
    x = torch.randn(10)
    x[3] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        qlearn.choose_qparams(x)
    qp = qlearn.choose_qparams(torch.randn(10))
    with pytest.raises(ValueError, match="NaN or inf"):
        qlearn.quantize(x, qp)


def test_empty_rejected():
    with pytest.raises(ValueError, match="empty"):
        qlearn.choose_qparams(torch.empty(0, 4))


def test_group_size_must_divide():
    with pytest.raises(ValueError, match="does not divide the last axis of size 30"):
        qlearn.choose_qparams(torch.randn(4, 30), granularity=PerGroup(8))


@pytest.mark.parametrize("group_size", [0, -4], ids=str)
def test_group_size_positive(group_size):
    with pytest.raises(ValueError, match="positive"):
        PerGroup(group_size)


def test_axis_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        qlearn.choose_qparams(torch.randn(4, 5), granularity=PerChannel(2))


def test_granularity_class_instead_of_instance():
    with pytest.raises(TypeError, match="instance"):
        qlearn.choose_qparams(torch.randn(4, 5), granularity=PerTensor)
    with pytest.raises(TypeError, match="granularity must be"):
        qlearn.choose_qparams(torch.randn(4, 5), granularity="channel")


def test_qparams_that_do_not_fit():
    qp = qlearn.choose_qparams(torch.randn(4, 8), granularity=PerChannel(0))
    with pytest.raises(ValueError, match="do not fit"):
        qlearn.quantize(torch.randn(5, 8), qp)
    with pytest.raises(ValueError, match="do not fit"):
        qlearn.dequantize(torch.zeros(5, 8, dtype=torch.int8), qp)
    with pytest.raises(ValueError, match="do not fit"):
        qlearn.fake_quantize(torch.randn(3, 8), qparams=qp)


def test_dequantize_rejects_float_and_out_of_range_codes():
    qp = qlearn.choose_qparams(torch.randn(8), bits=4)
    with pytest.raises(TypeError, match="integer"):
        qlearn.dequantize(torch.zeros(8), qp)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        qlearn.dequantize(torch.full((8,), 9, dtype=torch.int8), qp)


def test_qparams_validation():
    scale, zp = torch.ones(1), torch.zeros(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="positive"):
        QParams(torch.zeros(1), zp, 8, True, -128, 127)
    with pytest.raises(ValueError, match="qmin, qmax"):
        QParams(scale, zp, 8, True, 0, 255)
    with pytest.raises(ValueError, match="zero_point == 0"):
        QParams(scale, zp + 3, 8, True, -128, 127)
    with pytest.raises(TypeError, match="qparams must be a QParams"):
        qlearn.quantize(torch.randn(3), (scale, zp))


def test_metrics_edge_cases():
    x = torch.randn(10)
    assert qlearn.core.metrics.sqnr_db(x, x.clone()) == math.inf
    assert qlearn.core.metrics.cosine_similarity(x, 2 * x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        qlearn.core.metrics.mse(x, torch.randn(11))
    with pytest.raises(ValueError, match="all-zero"):
        qlearn.core.metrics.cosine_similarity(torch.zeros(3), torch.ones(3))
