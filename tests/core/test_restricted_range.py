"""choose_qparams(..., restricted=...): the restricted (-qmax..qmax) and full (qmin..qmax) symmetric ranges."""

import pytest
import torch
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from qlearn import PerChannel, PerGroup, PerTensor, choose_qparams, dequantize, qrange, quantize

BITS = [2, 3, 4, 8]


def _x(seed=0, shape=(16, 64)):
    torch.manual_seed(seed)
    return torch.randn(shape)


@pytest.mark.parametrize("bits", BITS, ids=lambda b: f"{b}bit")
def test_restricted_is_the_default_and_never_uses_qmin(bits):
    x = _x()
    qmin, qmax = qrange(bits)
    qp = choose_qparams(x, bits, symmetric=True)
    assert torch.equal(qp.scale, choose_qparams(x, bits, symmetric=True, restricted=True).scale)
    assert torch.allclose(qp.scale, x.abs().max() / qmax)
    q = quantize(x, qp)
    assert int(q.min()) >= -qmax and int(q.max()) <= qmax
    assert int(q.min()) == -qmax or int(q.max()) == qmax  # the largest |x| uses the end of the range


@pytest.mark.parametrize("bits", BITS, ids=lambda b: f"{b}bit")
def test_full_range_scale_is_max_over_half_the_code_span(bits):
    x = _x(1)
    qmin, qmax = qrange(bits)
    qp = choose_qparams(x, bits, symmetric=True, restricted=False)
    assert torch.allclose(qp.scale, x.abs().max() / ((qmax - qmin) / 2))
    assert int(qp.zero_point.abs().max()) == 0
    # -max|x| lands on qmin - 1/2 + 1/2 = exactly qmin: the full range uses the code qmin
    y = torch.cat([x.flatten(), -x.abs().max().reshape(1)])
    qy = quantize(y, choose_qparams(y, bits, symmetric=True, restricted=False))
    assert int(qy.min()) == qmin


def test_full_range_matches_torch_qint8_observers():
    """torch.ao's MinMaxObserver (per tensor) and PerChannelMinMaxObserver (axis 0) for symmetric qint8."""
    x = _x(2)
    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    obs(x)
    scale, zero_point = obs.calculate_qparams()
    qp = choose_qparams(x, 8, symmetric=True, restricted=False)
    assert torch.allclose(qp.scale.reshape(1), scale, rtol=1e-6, atol=0)
    assert int(zero_point) == 0
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(x)
    scale, zero_point = obs.calculate_qparams()
    qp = choose_qparams(x, 8, symmetric=True, granularity=PerChannel(0), restricted=False)
    assert torch.allclose(qp.scale.flatten(), scale, rtol=1e-6, atol=0)
    assert int(zero_point.abs().max()) == 0
    q_torch = torch.quantize_per_channel(x, scale.float(), zero_point, 0, torch.qint8).int_repr()
    q = quantize(x, qp)
    # Codes agree except at a rounding tie: each row's -max|x| sits exactly on -127.5, which qlearn
    # rounds half-to-even (-128) and torch, multiplying by 1/scale, may round to -127.
    differ = q != q_torch
    assert int((q.int() - q_torch.int()).abs().max()) <= 1
    assert bool(((x / qp.scale).abs()[differ] > 127.49).all())
    assert int(differ.sum()) <= x.shape[0]


@pytest.mark.parametrize("granularity", [PerTensor(), PerChannel(0), PerGroup(16)], ids=str)
def test_full_range_round_trip_error_is_at_most_half_a_step(granularity):
    x = _x(3)
    qp = choose_qparams(x, 4, symmetric=True, granularity=granularity, restricted=False)
    err = (x - dequantize(quantize(x, qp), qp)).abs()
    step = qp.scale.expand(granularity.to_blocks(x).shape).reshape(x.shape)  # (16, 64)
    assert bool((err <= step / 2 * (1 + 1e-5)).all())


def test_restricted_false_needs_symmetric():
    with pytest.raises(ValueError, match="only applies to symmetric"):
        choose_qparams(_x(), 8, symmetric=False, restricted=False)


@pytest.mark.parametrize("bad", [None, 1, "no"], ids=repr)
def test_restricted_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="restricted"):
        choose_qparams(_x(), 8, symmetric=True, restricted=bad)
