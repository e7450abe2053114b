"""LLM.int8(): properties of the decomposition, the layer, and bitsandbytes' Linear8bitLt as the oracle."""

import pytest
import torch
from torch import nn

from qlearn import quantize_model
from qlearn.methods.llm_int8 import Int8MixedLinear, Int8Weight, int8_mixed_matmul, int_matmul, outlier_columns

OUTLIER_COLS = [3, 17, 40]


def planted(tokens=32, d_in=64, d_out=48, scale=40.0, every_token=False):
    """X (tokens, in) ~ N(0, 1) with a few columns that reach |x| ~ scale; W (out, in) ~ N(0, 0.1)."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(tokens, d_in, generator=g)
    rows = torch.arange(tokens) if every_token else torch.arange(0, tokens, 4)
    for j in OUTLIER_COLS:
        X[:, j] *= 0.01
        X[rows, j] = scale * (1 + torch.rand(len(rows), generator=g)) * torch.sign(torch.randn(len(rows), generator=g))
    W = 0.1 * torch.randn(d_out, d_in, generator=g)
    return X, W


def test_outlier_columns_are_the_planted_ones():
    X, _ = planted()
    assert outlier_columns(X, 6.0).tolist() == OUTLIER_COLS
    assert outlier_columns(X, None).numel() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_threshold_above_max_equals_none(dtype):
    X, W = planted()
    X, W = X.to(dtype), W.to(dtype)
    plain = int8_mixed_matmul(X, W, threshold=None)
    above, cols = int8_mixed_matmul(X, W, threshold=float(X.abs().max()) * 1.01, return_outliers=True)
    assert cols.numel() == 0
    assert torch.equal(plain, above)
    assert plain.dtype == dtype


def test_int_matmul_is_exact():
    A = torch.randint(-127, 128, (9, 1000), dtype=torch.int8)
    B = torch.randint(-127, 128, (7, 1000), dtype=torch.int8)
    ref = A.long() @ B.long().t()
    assert torch.equal(int_matmul(A, B).long(), ref)


@pytest.mark.parametrize("isa", ["AVX2", "SSE41"], ids=["avx2", "sse41"])
def test_int_matmul_is_exact_on_cpus_without_vnni(isa):
    """oneDNN's int8 GEMM without VNNI saturates int16 pair sums; int_matmul must notice and stay exact.
    ONEDNN_MAX_CPU_ISA is read once per process, so the check runs in a fresh interpreter."""
    import os
    import subprocess
    import sys

    code = ("import torch; from qlearn.methods.llm_int8 import int_matmul\n"
            "g = torch.Generator().manual_seed(0)\n"
            "A = torch.randint(-127, 128, (33, 384), dtype=torch.int8, generator=g); A[:, :64] = 127\n"
            "B = torch.randint(-127, 128, (48, 384), dtype=torch.int8, generator=g); B[:, :64] = 127\n"
            "assert torch.equal(int_matmul(A, B).long(), A.long() @ B.long().t())\n")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_vectorwise_part_matches_its_formula():
    """threshold=None: Y = (X_q W_q^T) * s_x s_w^T with absmax / 127 scales, computed here from scratch."""
    X, W = planted()
    s_x = X.abs().amax(1, keepdim=True) / 127
    s_w = W.abs().amax(1, keepdim=True) / 127
    X_q, W_q = torch.round(X / s_x), torch.round(W / s_w)
    ref = (X_q.double() @ W_q.double().t()) * (s_x.double() * s_w.double().t())
    torch.testing.assert_close(int8_mixed_matmul(X, W, None).double(), ref, rtol=1e-5, atol=1e-6)


def test_every_column_an_outlier_is_the_float_matmul():
    X, W = planted()
    Y = int8_mixed_matmul(X, W, threshold=1e-9)
    torch.testing.assert_close(Y, X @ W.t(), rtol=1e-5, atol=1e-5)


def test_decomposition_beats_plain_int8_by_10x():
    X, W = planted()
    ref = X @ W.t()
    err_plain = (int8_mixed_matmul(X, W, None) - ref).pow(2).mean()
    err_mixed = (int8_mixed_matmul(X, W, 6.0) - ref).pow(2).mean()
    assert err_mixed * 10 < err_plain


def test_empty_token_batch():
    _, W = planted()
    assert int8_mixed_matmul(torch.zeros(0, 64), W).shape == (0, 48)


def test_layer_matches_function_and_records_outliers():
    X, W = planted()
    lin = nn.Linear(64, 48)
    lin.weight.data.copy_(W)
    layer = Int8MixedLinear.from_linear(lin, threshold=6.0)
    x3 = X.reshape(4, 8, 64)  # (batch, seq, in)
    y = layer(x3)
    ref = int8_mixed_matmul(X, Int8Weight.from_float(W), 6.0) + lin.bias.detach()
    assert y.shape == (4, 8, 48)
    assert torch.equal(y.reshape(32, 48), ref)
    assert layer.last_outliers.tolist() == OUTLIER_COLS
    layer(torch.randn(5, 64))  # no outliers at all
    assert layer.last_outliers.numel() == 0 and layer.max_outliers == 3
    assert layer.outliers_seen.nonzero().reshape(-1).tolist() == OUTLIER_COLS


def test_quantize_model_and_its_report_stats():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    X, _ = planted()
    ref = model(X)
    report = quantize_model(model, bits=8, method="llm_int8", threshold=6.0)
    assert report.replaced == ("0", "2") and isinstance(model[0], Int8MixedLinear)
    y = model(X)
    assert (y - ref).abs().max() < 0.05 * ref.abs().max()
    stats = report.stats()
    assert stats["0"]["float_columns_last"] == 3 and stats["0"]["float_columns_seen"] == 3


# ---- bitsandbytes' Linear8bitLt as the oracle ---------------------------------------------------------

def bnb_layer(lin):
    bnb = pytest.importorskip("bitsandbytes")
    m = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=True, has_fp16_weights=False, threshold=6.0)
    m.weight = bnb.nn.Int8Params(lin.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
    m.bias = nn.Parameter(lin.bias.data.clone(), requires_grad=False)
    return m.to("cpu").eval()  # .to() on the CPU quantizes the weight (CB int8 codes, SCB row absmax)


@pytest.mark.parametrize("every_token", [True, False], ids=["outlier-in-every-token", "outlier-in-some-tokens"])
def test_matches_bitsandbytes_linear8bitlt(every_token):
    """Same outlier columns; outputs agree to int8 rounding.

    bitsandbytes casts X and W to float16 first, so both are made float16-exact here. With an
    outlier in every token of its column both methods see the same row absmax and differ only
    where x * 127 / absmax lands on a .5 tie (a code off by one): 1e-3 of max|Y|. With outliers in
    some tokens only, bitsandbytes' row absmax also counts the small values of outlier columns
    (it zeroes elements, not columns); here those values are 0.01 N(0, 1), far below the row
    maximum, so the bound is the same.
    """
    X, W = planted(every_token=every_token)
    X, W = X.half().float(), W.half().float()
    lin = nn.Linear(64, 48)
    lin.weight.data.copy_(W)
    lin.bias.data.copy_(lin.bias.data.half().float())
    oracle = bnb_layer(lin)
    with torch.no_grad():
        y_bnb = oracle(X).float()
    ours = Int8MixedLinear.from_linear(lin, threshold=6.0)
    y = ours(X)
    assert oracle.state.idx.tolist() == ours.last_outliers.tolist() == OUTLIER_COLS
    assert torch.equal(ours.weight_q, oracle.weight.data)  # the same int8 weight codes
    assert (y - y_bnb).abs().max() <= 1e-3 * y_bnb.abs().max()


# ---- bad inputs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0, -1.0, float("nan"), float("inf")], ids=["zero", "negative", "nan", "inf"])
def test_bad_threshold_values(threshold):
    X, W = planted()
    with pytest.raises(ValueError, match="threshold"):
        int8_mixed_matmul(X, W, threshold)


@pytest.mark.parametrize("threshold", [True, "6", [6.0]], ids=["bool", "str", "list"])
def test_bad_threshold_types(threshold):
    X, W = planted()
    with pytest.raises(TypeError, match="threshold"):
        int8_mixed_matmul(X, W, threshold)


@pytest.mark.parametrize("X, W, err", [
    (torch.randn(64), torch.randn(8, 64), ValueError),
    (torch.randn(4, 64), torch.randn(8, 63), ValueError),
    (torch.randn(4, 0), torch.randn(8, 0), ValueError),
    (torch.full((4, 64), float("nan")), torch.randn(8, 64), ValueError),
    (torch.randn(4, 64), torch.full((8, 64), float("inf")), ValueError),
    (torch.ones(4, 64, dtype=torch.int32), torch.randn(8, 64), TypeError),
    ("x", torch.randn(8, 64), TypeError),
], ids=["X-1d", "in-mismatch", "no-columns", "X-nan", "W-inf", "X-int", "X-str"])
def test_bad_tensors(X, W, err):
    with pytest.raises(err):
        int8_mixed_matmul(X, W)


def test_bad_int_matmul_and_layer_inputs():
    with pytest.raises(TypeError, match="int8"):
        int_matmul(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int8))
    with pytest.raises(ValueError, match="share k"):
        int_matmul(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 4, dtype=torch.int8))
    layer = Int8MixedLinear.from_linear(nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        layer(torch.randn(3, 7))
    with pytest.raises(TypeError, match="nn.Linear"):
        Int8MixedLinear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="threshold"):
        Int8MixedLinear.from_linear(nn.Linear(8, 4), threshold=-2)
