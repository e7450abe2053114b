"""Observers: oracle tests against torch.ao.quantization and numpy, properties, and every bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.ao.quantization import observer as torch_obs

from qlearn import PerChannel, PerGroup, PerTensor, PerToken, choose_qparams, fake_quantize
from qlearn.core import metrics
from qlearn.training.observers import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    make_observer,
    qparams_from_range,
)

pytestmark = pytest.mark.usefixtures("one_thread")


GRANULARITIES = [PerTensor(), PerChannel(0), PerChannel(1), PerGroup(4), PerToken()]
GRAN_IDS = ["per_tensor", "per_channel0", "per_channel1", "per_group4", "per_token"]


def with_outliers(n=4096, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    x[:4] = torch.tensor([25.0, -18.0, 30.0, 22.0])  # a few large outliers
    return x


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), symmetric=st.booleans(), gran=st.sampled_from(GRANULARITIES),
       seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3))
def test_minmax_observer_equals_choose_qparams(bits, symmetric, gran, seed, scale):
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(seed)) * scale
    got = MinMaxObserver(bits, symmetric, gran).observe(x).qparams()
    want = choose_qparams(x, bits, symmetric, gran)
    assert torch.equal(got.scale, want.scale) and torch.equal(got.zero_point, want.zero_point)
    assert got.granularity == gran and got.bits == bits and got.symmetric == symmetric


@pytest.mark.parametrize("gran", [PerTensor(), PerChannel(1)], ids=["per_tensor", "per_feature"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_minmax_over_batches_equals_minmax_of_all(gran, symmetric):
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 16, generator=gen) * (i + 1) - i for i in range(3)]
    obs = MinMaxObserver(4, symmetric, gran)
    for b in batches:
        obs.observe(b)
    want = choose_qparams(torch.cat(batches), 4, symmetric, gran)  # (24, 16): the same blocks
    assert torch.equal(obs.qparams().scale, want.scale) and torch.equal(obs.qparams().zero_point, want.zero_point)


def test_minmax_matches_torch_ao_observer_asymmetric():
    """torch's per-tensor affine qint8 observer uses the same signed range and formulas."""
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(64, generator=gen) * 3 + 1 for _ in range(4)]
    ours, ref = MinMaxObserver(8, False), torch_obs.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    for b in batches:
        ours.observe(b)
        ref(b)
    ref_scale, ref_zp = ref.calculate_qparams()
    qp = ours.qparams()
    torch.testing.assert_close(qp.scale.flatten(), ref_scale.float())
    assert int(qp.zero_point) == int(ref_zp)


@pytest.mark.parametrize("c", [0.01, 0.3, 1.0], ids=["c0.01", "c0.3", "c1"])
def test_moving_average_matches_torch_ao_observer(c):
    gen = torch.Generator().manual_seed(3)
    ours, ref = MovingAverageMinMaxObserver(8, False, averaging_constant=c), torch_obs.MovingAverageMinMaxObserver(
        averaging_constant=c, dtype=torch.qint8)
    for i in range(5):
        b = torch.randn(128, generator=gen) * (1 + i)
        ours.observe(b)
        ref(b)
    lo, hi = ours.range()
    torch.testing.assert_close(lo.flatten(), ref.min_val.reshape(1))
    torch.testing.assert_close(hi.flatten(), ref.max_val.reshape(1))


def test_moving_average_damps_a_single_extreme_batch():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(4))
    mm, ma = MinMaxObserver(), MovingAverageMinMaxObserver(averaging_constant=0.1)
    for b in (x, x * 20, x):
        mm.observe(b)
        ma.observe(b)
    assert float(ma.range()[1]) < float(mm.range()[1])


@pytest.mark.parametrize("p", [90.0, 99.0, 99.9, 100.0], ids=["p90", "p99", "p99.9", "p100"])
def test_percentile_matches_numpy(p):
    x = with_outliers()
    lo, hi = PercentileObserver(8, False, percentile=p).observe(x[:2000]).observe(x[2000:]).range()
    assert float(lo) == pytest.approx(np.percentile(x.numpy(), 100 - p), rel=1e-5, abs=1e-6)
    assert float(hi) == pytest.approx(np.percentile(x.numpy(), p), rel=1e-5, abs=1e-6)


def test_percentile_per_channel_matches_numpy_per_row():
    W = torch.randn(6, 50, generator=torch.Generator().manual_seed(5))
    lo, hi = PercentileObserver(4, True, PerChannel(0), percentile=95.0).observe(W).range()
    np.testing.assert_allclose(hi.flatten().numpy(), np.percentile(W.numpy(), 95.0, axis=1), rtol=1e-5)
    assert lo.shape == (6, 1)


@pytest.mark.parametrize("bits", [2, 4, 8], ids=["2bit", "4bit", "8bit"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_mse_observer_never_worse_than_minmax(bits, symmetric):
    x = with_outliers()
    err = {name: metrics.mse(x, fake_quantize(x, qparams=make_observer(name, bits, symmetric).observe(x).qparams()))
           for name in ("minmax", "mse")}
    assert err["mse"] <= err["minmax"]


def test_clipping_observers_beat_minmax_on_outliers_at_4_bits():
    x = with_outliers()
    err = {name: metrics.mse(x, fake_quantize(x, qparams=make_observer(name, 4, True).observe(x).qparams()))
           for name in ("minmax", "percentile", "mse")}
    assert err["mse"] < err["minmax"] and err["percentile"] < err["minmax"]


def test_mse_observer_picks_the_grid_minimum():
    x = with_outliers()
    obs = MSEObserver(3, True, grid=50).observe(x)
    ratios, errs = obs.errors()
    assert ratios.shape == (50,) and errs.shape == (50, 1)
    best = float(ratios[errs[:, 0].argmin()])
    assert float(obs.range()[1]) == pytest.approx(best * float(x.max()))


@pytest.mark.parametrize("gran", GRANULARITIES, ids=GRAN_IDS)
@pytest.mark.parametrize("name", ["minmax", "moving_average", "percentile", "mse"])
def test_every_observer_gives_qparams_of_the_granularity(name, gran):
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(6))
    qp = make_observer(name, 4, False, gran).observe(x).qparams()
    qp.check_fits(x.shape)
    x_hat = fake_quantize(x, qparams=qp)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()


def test_qparams_from_range_constant_and_zero_blocks():
    qp = qparams_from_range(torch.tensor([[0.0], [2.0]]), torch.tensor([[0.0], [2.0]]), 8, False, PerChannel(0))
    assert qp.scale.flatten().tolist() == [1.0, 2.0] and qp.zero_point.flatten().tolist() == [0, 0]


def test_observer_keeps_dtype():
    x = torch.randn(32).to(torch.bfloat16)
    assert MinMaxObserver().observe(x).qparams().dtype == torch.bfloat16


@pytest.mark.parametrize("make, err", [
    (lambda: MinMaxObserver(bits=9), ValueError),
    (lambda: MinMaxObserver(bits=4.0), TypeError),
    (lambda: MinMaxObserver(symmetric="yes"), TypeError),
    (lambda: MinMaxObserver(granularity="per_tensor"), TypeError),
    (lambda: MovingAverageMinMaxObserver(averaging_constant=0.0), ValueError),
    (lambda: MovingAverageMinMaxObserver(averaging_constant=1.5), ValueError),
    (lambda: PercentileObserver(percentile=40.0), ValueError),
    (lambda: PercentileObserver(percentile=101), ValueError),
    (lambda: MSEObserver(grid=0), ValueError),
    (lambda: MSEObserver(grid=2.5), ValueError),
    (lambda: make_observer("histogram"), ValueError),
    (lambda: MinMaxObserver().qparams(), ValueError),
    (lambda: MSEObserver().errors(), ValueError),
    (lambda: MinMaxObserver().observe([1.0, 2.0]), TypeError),
    (lambda: MinMaxObserver().observe(torch.arange(4)), TypeError),
    (lambda: MinMaxObserver().observe(torch.tensor([1.0, float("nan")])), ValueError),
    (lambda: MinMaxObserver().observe(torch.empty(0)), ValueError),
    (lambda: MinMaxObserver(granularity=PerGroup(5)).observe(torch.randn(4, 8)), ValueError),
    (lambda: MinMaxObserver(granularity=PerChannel(1)).observe(torch.randn(4, 8)).observe(torch.randn(4, 6)),
     ValueError),
    (lambda: qparams_from_range(torch.tensor([1.0]), torch.tensor([0.0])), ValueError),
    (lambda: qparams_from_range(torch.zeros(2), torch.ones(3)), ValueError),
    (lambda: qparams_from_range(torch.zeros(2), torch.ones(2), dtype=torch.int8), TypeError),
], ids=["bits9", "bits_float", "symmetric_str", "granularity_str", "avg_c0", "avg_c1.5", "percentile40",
        "percentile101", "grid0", "grid_float", "unknown_name", "qparams_before_observe", "errors_before_observe",
        "observe_list", "observe_int", "observe_nan", "observe_empty", "group_not_dividing", "stats_shape_changes",
        "lo_above_hi", "lo_hi_shapes", "int_dtype"])
def test_bad_inputs_raise_clear_errors(make, err):
    with pytest.raises(err):
        make()
