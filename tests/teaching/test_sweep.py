"""qlearn.teaching.sweep and qlearn.data.tensors: the numbers behind the sweep plots and the explorer."""

import pytest
import torch

from qlearn import PerGroup, choose_qparams, dequantize, quantize
from qlearn.core import metrics
from qlearn.data.tensors import SAMPLE_TENSORS, rows_with_ranges, sample_tensor
from qlearn.teaching.sweep import pareto_sweep, roundtrip, sqnr_sweep


def test_roundtrip_equals_the_primitives():
    x = sample_tensor("outliers", (32, 64))
    x_hat, numbers = roundtrip(x, 4, True, PerGroup(16))
    qp = choose_qparams(x, 4, True, PerGroup(16))
    assert torch.equal(x_hat, dequantize(quantize(x, qp), qp))
    assert numbers["mse"] == metrics.mse(x, x_hat) and numbers["sqnr_db"] == metrics.sqnr_db(x, x_hat)
    assert numbers["effective_bits"] == 4 + 32 / 16  # symmetric: a float32 scale per group, no zero point


def test_sqnr_grows_about_6db_per_bit_on_gaussian_data():
    sweep = sqnr_sweep(sample_tensor("gaussian", (64, 256)), {"asym": {}}, bits=[6, 7, 8])["asym"]
    assert 5.0 < sweep[7] - sweep[6] < 7.0 and 5.0 < sweep[8] - sweep[7] < 7.0


def test_asymmetric_beats_symmetric_on_relu_data_by_about_4x_mse():
    x = sample_tensor("relu")
    mse_sym = roundtrip(x, 8, True)[1]["mse"]
    mse_asym = roundtrip(x, 8, False)[1]["mse"]
    assert 3.0 < mse_sym / mse_asym < 5.0


def test_pareto_front_is_not_dominated():
    points = pareto_sweep(rows_with_ranges(16, 128), bits=(3, 4), group_sizes=(32, 128))
    assert len(points) == 2 * 4
    for p in points:
        dominated = any(q["effective_bits"] <= p["effective_bits"] and q["sqnr_db"] > p["sqnr_db"] for q in points)
        assert p["pareto"] == (not dominated)
    assert any(p["pareto"] for p in points)


def test_rows_with_ranges_spans_the_ratio():
    W = rows_with_ranges(64, 256, ratio=100.0)
    std = W.std(dim=1)
    assert 60 < float(std[-1] / std[0]) < 160


@pytest.mark.parametrize("name", SAMPLE_TENSORS[:3])
def test_synthetic_sample_tensors_are_seeded(name):
    assert torch.equal(sample_tensor(name, (8, 16), seed=3), sample_tensor(name, (8, 16), seed=3))
    assert not torch.equal(sample_tensor(name, (8, 16), seed=3), sample_tensor(name, (8, 16), seed=4))


def test_relu_is_non_negative_and_outliers_are_heavy_tailed():
    assert float(sample_tensor("relu").min()) == 0.0
    x = sample_tensor("outliers")
    assert float(x.abs().max()) > 10 * float(x.std())


@pytest.mark.parametrize("call, err, match", [
    (lambda: sample_tensor("cats"), ValueError, "unknown sample tensor"),
    (lambda: sample_tensor("gaussian", (3,)), ValueError, "two positive ints"),
    (lambda: sample_tensor("gaussian", seed=1.5), TypeError, "seed"),
    (lambda: rows_with_ranges(1, 8), ValueError, "at least 2"),
    (lambda: rows_with_ranges(4, 8, ratio=0.5), ValueError, "ratio"),
    (lambda: sqnr_sweep(torch.ones(4), {}), TypeError, "non-empty dict"),
    (lambda: sqnr_sweep(torch.ones(4), {"a": {"bits": 3}}), ValueError, "keys among"),
    (lambda: sqnr_sweep(torch.ones(4), {"a": {}}, bits=[]), ValueError, "at least one"),
    (lambda: sqnr_sweep(torch.ones(4), {"a": {}}, bits=[9]), ValueError, "bits"),
    (lambda: pareto_sweep(torch.ones(4)), ValueError, "2-D"),
    (lambda: pareto_sweep(torch.ones(4, 48), group_sizes=(32,)), ValueError, "divide"),
    (lambda: roundtrip(torch.ones(4, dtype=torch.int32)), TypeError, "floating-point"),
], ids=["unknown-name", "1d-shape", "float-seed", "one-row", "ratio-below-1", "empty-schemes", "bad-scheme-key",
        "no-bits", "bits-9", "1d-weight", "group-not-dividing", "int-tensor"])
def test_bad_inputs(call, err, match):
    with pytest.raises(err, match=match):
        call()
