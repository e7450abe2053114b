"""GPTQ: exact properties (equals RTN without correlations, independent of block size), the reference, RTN beaten."""

import pytest
import torch

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


@pytest.mark.parametrize("bits,group_size", [(4, 64), (3, 64), (2, 32), (4, None)], ids=["4bit", "3bit", "2bit", "4bit-row"])
@pytest.mark.parametrize("act_order", [False, True], ids=["in-order", "act-order"])
def test_beats_rtn_on_held_out_correlated_inputs(bits, group_size, act_order):
    W = torch.randn(64, 256) * 0.05
    X = ar1_inputs(1536, 256)
    X_cal, X_test = X[:1024], X[1024:]
    qw = gptq.quantize_weight(W, X_cal, bits=bits, group_size=group_size, act_order=act_order)
    ratio = output_error(X_test, W, qw.dequantize()) / output_error(X_test, W, rtn.quantize_weight(W, bits=bits, group_size=group_size).dequantize())
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
