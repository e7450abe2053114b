"""The shrunk min-max grid (GPTQ's grid="mse"): the reference's search, never worse than min-max, used by GPTQ."""

import pytest
import torch

from qlearn.core.granularity import PerChannel
from qlearn.core.primitives import QParams, choose_qparams, dequantize, quantize
from qlearn.methods import gptq, rtn
shrink_params = gptq.shrink_params

from .toys import ar1_inputs, orthogonal_inputs, output_error


def heavy_rows(rows=32, cols=64, seed=0):
    """Student-t rows (3 degrees of freedom): a few large weights stretch each row's min-max range."""
    g = torch.Generator().manual_seed(seed)
    chi2 = torch.randn(3, rows, cols, generator=g).square().sum(0)  # chi-squared, 3 degrees of freedom
    return torch.randn(rows, cols, generator=g) / (chi2 / 3).sqrt() * 0.02


def row_error(w, qp, norm=2.4):
    return (dequantize(quantize(w, qp), qp) - w).abs().pow(norm).sum(1)  # (rows,)


@pytest.mark.parametrize("bits,symmetric", [(2, False), (3, False), (4, True), (8, False)])
def test_matches_a_brute_force_search_over_shrunk_ranges(bits, symmetric):
    """Written the slow way with choose_qparams on p * w for every p: coarse=1 finds the same minimum per row,
    the default coarse-to-fine search one within 0.1 % of it in total and never above min-max."""
    w = heavy_rows()
    errors = torch.stack([row_error(w, choose_qparams(w * (1 - i / 100), bits, symmetric, PerChannel(0)))
                          for i in range(80)])  # (80, rows)
    exhaustive = row_error(w, shrink_params(w, bits, symmetric, coarse=1))
    assert torch.allclose(exhaustive, errors.min(0).values, rtol=1e-5, atol=0)
    fast = row_error(w, shrink_params(w, bits, symmetric))
    assert float(fast.sum()) <= 1.001 * float(exhaustive.sum())
    assert bool((fast <= errors[0] * (1 + 1e-6)).all())


@pytest.mark.parametrize("bits,bound", [(2, 0.75), (3, 0.9), (4, 0.97)])
def test_never_worse_than_min_max_and_better_on_heavy_tails(bits, bound):
    """The gain shrinks with the bits (about 0.67, 0.87 and 0.94 of min-max's error here)."""
    w = heavy_rows(seed=1)
    qp = shrink_params(w, bits, symmetric=False)
    minmax = row_error(w, choose_qparams(w, bits, False, PerChannel(0)))
    assert bool((row_error(w, qp) <= minmax).all())
    assert float(row_error(w, qp).sum()) < bound * float(minmax.sum())
    assert isinstance(qp, QParams) and qp.scale.shape == (32, 1) and qp.zero_point.dtype == torch.int32


def test_gptq_mse_grid_equals_rtn_on_that_grid_without_correlations():
    """X^T X = n I and damp 0: no error feedback, so GPTQ with grid="mse" is RTN on the shrunk grid, per group."""
    W = heavy_rows(24, 128, seed=2)
    X = orthogonal_inputs(256, 128)
    qw = gptq.quantize_weight(W, X, bits=3, group_size=32, damp=0.0, grid="mse")
    groups = [shrink_params(W[:, k:k + 32].contiguous(), 3, False) for k in range(0, 128, 32)]
    expected = torch.cat([dequantize(quantize(W[:, k * 32:(k + 1) * 32], qp), qp) for k, qp in enumerate(groups)], 1)
    assert torch.allclose(qw.dequantize(), expected, atol=1e-6)
    assert not torch.equal(qw.dequantize(), rtn.quantize_weight(W, bits=3, group_size=32).dequantize())


@pytest.mark.parametrize("bits,bound", [(2, 0.9), (3, 0.97)])
def test_gptq_mse_grid_lowers_held_out_output_error_at_low_bits(bits, bound):
    """About 0.84x (2 bits) and 0.94x (3 bits) the min-max grid's output error on held-out tokens."""
    W = heavy_rows(64, 256, seed=3)
    X = ar1_inputs(1536, 256)
    X_cal, X_test = X[:1024], X[1024:]
    minmax = gptq.quantize_weight(W, X_cal, bits=bits, group_size=64)
    mse = gptq.quantize_weight(W, X_cal, bits=bits, group_size=64, grid="mse")
    assert output_error(X_test, W, mse.dequantize()) < bound * output_error(X_test, W, minmax.dequantize())


@pytest.mark.parametrize("kwargs,error,match", [
    ({"norm": 0}, ValueError, "norm"),
    ({"norm": "2"}, TypeError, "norm"),
    ({"norm": float("inf")}, ValueError, "norm"),
    ({"grid": 0}, ValueError, "grid"),
    ({"max_shrink": 1.0}, ValueError, "max_shrink"),
    ({"max_shrink": -0.1}, ValueError, "max_shrink"),
    ({"coarse": 0}, ValueError, "coarse"),
    ({"bits": 1}, ValueError, "bits"),
    ({"symmetric": 1}, TypeError, "symmetric"),
])
def test_rejects_bad_search_settings(kwargs, error, match):
    args = {"bits": 4, "symmetric": False, **kwargs}
    with pytest.raises(error, match=match):
        shrink_params(torch.randn(4, 8), **args)


@pytest.mark.parametrize("w,error,match", [
    (torch.randn(4, 8).double(), TypeError, "float32"),
    ("w", TypeError, "torch.Tensor"),
    (torch.arange(8).reshape(2, 4), TypeError, "floating-point"),
    (torch.randn(8), ValueError, "2-D"),
    (torch.empty(0, 4), ValueError, "empty"),
    (torch.tensor([[1.0, float("nan")]]), ValueError, "NaN or inf"),
], ids=["float64", "str", "int", "1-D", "empty", "nan"])
def test_rejects_what_is_not_a_finite_2d_float32_block(w, error, match):
    with pytest.raises(error, match=match):
        shrink_params(w, 4, False)


def test_chunked_search_gives_the_same_grid(monkeypatch):
    """A weight too large for one chunk of candidates is searched in several: the result must not change."""

    w = heavy_rows(16, 32, seed=4)
    whole = [shrink_params(w, 2, False, coarse=c) for c in (1, 5)]
    monkeypatch.setattr(gptq, "_CHUNK", 3 * w.numel())  # 3 candidates per chunk
    for coarse, expected in zip((1, 5), whole):
        chunked = shrink_params(w, 2, False, coarse=coarse)
        assert torch.equal(chunked.scale, expected.scale) and torch.equal(chunked.zero_point, expected.zero_point)


@pytest.mark.parametrize("grid,error", [("MSE", ValueError), ("clip", ValueError), (None, TypeError), (1, TypeError)])
def test_gptq_rejects_an_unknown_grid(grid, error):
    with pytest.raises(error, match="grid must be"):
        gptq.quantize_weight(torch.randn(8, 64), torch.randn(128, 64), group_size=32, grid=grid)
