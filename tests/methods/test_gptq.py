"""GPTQ: exact properties (equals RTN without correlations, independent of block size), the reference, RTN beaten."""

import pytest
import torch

from qlearn.core.granularity import PerChannel
from qlearn.core.primitives import QParams, choose_qparams, dequantize, quantize
from qlearn.methods import gptq, rtn

from .toys import ar1_inputs, orthogonal_inputs, output_error

GRIDS = [(4, 32, False), (3, None, False), (2, 16, True), (8, 64, False)]
GRID_IDS = [f"{b}bit-g{g}-{'sym' if s else 'asym'}" for b, g, s in GRIDS]


@pytest.mark.parametrize("bits,group_size,symmetric", GRIDS, ids=GRID_IDS)
def test_equals_rtn_when_inputs_are_uncorrelated_with_equal_norms(bits, group_size, symmetric):
    W = torch.randn(24, 128)
    X = orthogonal_inputs(256, 128)  # X^T X = 256 I exactly, so H^-1 is diagonal: no error feedback
    qw = gptq.quantize_weight(W, X, bits=bits, group_size=group_size, damp=0.0, block_size=48, symmetric=symmetric)
    ref = rtn.quantize_weight(W, bits=bits, group_size=group_size, symmetric=symmetric)
    assert torch.equal(qw.codes(), ref.codes())
    assert torch.equal(qw.dequantize(), ref.dequantize())


@pytest.mark.parametrize("group_size", [32, None], ids=["g32", "per-row"])
def test_act_order_keeps_groups_and_unpermutes(group_size):
    """A diagonal H with unsorted entries: act_order reorders the columns, yet nothing feeds back -> RTN."""
    W = torch.randn(16, 128)
    log2_norms = torch.randint(-2, 3, (128,), generator=torch.Generator().manual_seed(1))
    X = orthogonal_inputs(256, 128, log2_norms)
    qw = gptq.quantize_weight(W, X, group_size=group_size, damp=0.0, act_order=True, block_size=40)
    assert torch.equal(qw.codes(), rtn.quantize_weight(W, group_size=group_size).codes())


@pytest.mark.parametrize("group_size", [None, 32], ids=["per-row", "g32"])
@pytest.mark.parametrize("act_order", [False, True], ids=["in-order", "act-order"])
def test_result_does_not_depend_on_block_size(group_size, act_order):
    W = torch.randn(32, 128)
    X = ar1_inputs(512, 128)
    results = [gptq.quantize_weight(W, X, group_size=group_size, act_order=act_order, block_size=b)
               for b in (1, 7, 32, 128)]
    for other in results[1:]:
        flips = (other.codes() != results[0].codes())
        assert float(flips.float().mean()) < 1e-3  # float ties only
        assert torch.allclose(other.dequantize()[~flips], results[0].dequantize()[~flips], atol=1e-6)


def reference_gptq(W, X, bits, groupsize, blocksize=128, percdamp=0.01):
    """IST-DASLab/gptq fasterquant (asymmetric min-max quantizer of quant.py), transcribed for the test."""
    maxq = 2 ** bits - 1

    def find_params(x):
        xmin = torch.minimum(x.min(1)[0], torch.zeros(x.shape[0]))
        xmax = torch.maximum(x.max(1)[0], torch.zeros(x.shape[0]))
        scale = (xmax - xmin) / maxq
        return scale[:, None], torch.round(-xmin / scale)[:, None]

    W = W.clone().float()
    H = 2 * X.T.float() @ X.float() / X.shape[0]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[range(len(H)), range(len(H))] += percdamp * torch.mean(torch.diag(H))
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, W.shape[1], blocksize):
        i2 = min(i1 + blocksize, W.shape[1])
        W1, Err1, Hinv1 = W[:, i1:i2].clone(), torch.zeros(W.shape[0], i2 - i1), Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            if (i1 + i) % groupsize == 0:
                scale, zero = find_params(W[:, i1 + i:i1 + i + groupsize])
            q = (scale * (torch.clamp(torch.round(w[:, None] / scale) + zero, 0, maxq) - zero)).flatten()
            Q[:, i1 + i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1[:, None] @ Hinv1[i, i:][None, :]
            Err1[:, i] = err1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q


@pytest.mark.parametrize("bits", [4, 3], ids=lambda b: f"{b}bit")
def test_matches_the_reference_implementation(bits):
    W = torch.randn(32, 256) * 0.1
    W[:, 5] = 1.0
    X = ar1_inputs(512, 256)
    X[:, 5] = 0.0  # a dead column
    ours = gptq.quantize_weight(W, X, bits=bits, group_size=64, block_size=64).dequantize()
    ref = reference_gptq(W, X, bits, groupsize=64, blocksize=64)
    close = torch.isclose(ours, ref, atol=1e-5)
    assert float(close.float().mean()) > 0.999
    assert bool((ours[:, 5] == 0).all())


@pytest.mark.parametrize("bits,group_size", [(4, 64), (3, 64), (2, 32), (4, None)],
                         ids=["4bit", "3bit", "2bit", "4bit-row"])
@pytest.mark.parametrize("act_order", [False, True], ids=["in-order", "act-order"])
def test_beats_rtn_on_held_out_correlated_inputs(bits, group_size, act_order):
    W = torch.randn(64, 256) * 0.05
    X = ar1_inputs(1536, 256)
    X_cal, X_test = X[:1024], X[1024:]
    qw = gptq.quantize_weight(W, X_cal, bits=bits, group_size=group_size, act_order=act_order)
    ratio = (output_error(X_test, W, qw.dequantize())
             / output_error(X_test, W, rtn.quantize_weight(W, bits=bits, group_size=group_size).dequantize()))
    assert ratio < 0.7


def test_singular_hessian_without_damp_fails_clearly():
    W = torch.randn(8, 64)
    X = torch.randn(16, 64)  # 16 tokens, 64 features: X^T X has rank 16
    with pytest.raises(ValueError, match="positive definite"):
        gptq.quantize_weight(W, X, group_size=None, damp=0.0)
    assert gptq.quantize_weight(W, X, group_size=None, damp=0.01).dequantize().isfinite().all()


def test_correlated_inputs_have_unit_variance_and_ar1_correlation():
    from qlearn.data import tensors

    X = tensors.correlated_inputs(4096, 16, rho=0.9)
    corr = torch.corrcoef(X.T)  # (16, 16)
    assert torch.allclose(X.var(0), torch.ones(16), atol=0.1)
    assert abs(float(corr.diagonal(1).mean()) - 0.9) < 0.02 and abs(float(corr.diagonal(3).mean()) - 0.729) < 0.03
    with pytest.raises(ValueError, match="rho"):
        tensors.correlated_inputs(8, 8, rho=1.0)


# ---- shrink_grid (merged) ----

shrink_params = gptq.shrink_params



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
