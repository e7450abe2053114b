"""Wanda: exact per-row and n:m masks, equal to magnitude per row when inputs are flat, the reference, magnitude beaten.

Oracle: locuslab/wanda's prune_wanda (lib/prune.py) with its WrappedGPT.add_batch (lib/layerwrapper.py), ported
below, on random and on real MiniLM layers with the inputs they receive for the course's sentences.
"""

import pytest
import torch

from qlearn.compression.prune import magnitude_prune, nm_mask, row_mask
from qlearn.data import llm, models
from qlearn.inference.capture import capture_inputs
from qlearn.methods import wanda
from tests.conftest import DEVICES

from .toys import ar1_inputs, output_error

MINILM_LAYERS = ["encoder.layer.0.attention.self.query", "encoder.layer.2.intermediate.dense",
                 "encoder.layer.5.output.dense"]


# ---- the reference, ported: locuslab/wanda lib/layerwrapper.py WrappedGPT.add_batch + lib/prune.py prune_wanda ----

def reference_wanda(W, batches, sparsity_ratio, prune_n=0, prune_m=0):
    """locuslab/wanda's prune_wanda on one Linear weight, its inputs fed batch by batch as WrappedGPT.add_batch."""
    columns = W.shape[1]
    scaler_row, nsamples = torch.zeros(columns), 0
    for inp in batches:  # WrappedGPT.add_batch
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        scaler_row *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = inp.type(torch.float32)
        scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / nsamples
    W_metric = torch.abs(W) * torch.sqrt(scaler_row.reshape((1, -1)))  # prune_wanda
    W_mask = (torch.zeros_like(W_metric) == 1)
    if prune_n != 0:
        for ii in range(W_metric.shape[1]):
            if ii % prune_m == 0:
                tmp = W_metric[:, ii:(ii + prune_m)].float()
                W_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
    else:
        sort_res = torch.sort(W_metric, dim=-1, stable=True)
        indices = sort_res[1][:, :int(W_metric.shape[1] * sparsity_ratio)]
        W_mask.scatter_(1, indices, True)
    W = W.clone()
    W[W_mask] = 0
    return W, ~W_mask


@pytest.fixture(scope="module")
def minilm_layers():
    """{name: (W, X)}: three MiniLM layers and the inputs they receive for the course's eight sentences."""
    model, tokenizer = models.load_model()
    batch = tokenizer(list(models.SENTENCES), padding=True, return_tensors="pt")
    X = capture_inputs(model, MINILM_LAYERS, [batch])
    W = models.linear_weights(model)
    return {name: (W[name], X[name]) for name in MINILM_LAYERS}


# ---- properties ----

@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.7, 0.99], ids=lambda s: f"s={s}")
def test_every_row_loses_exactly_int_in_times_sparsity_lowest_scores(sparsity):
    W, X = torch.randn(12, 90), torch.randn(40, 90) * torch.rand(90) * 4
    W_p, keep = wanda.prune_weight(W, X, sparsity, return_mask=True)
    k = int(90 * sparsity)
    assert ((~keep).sum(dim=1) == k).all()
    assert torch.equal(W_p, W * keep)  # kept weights unchanged, no update
    S = W.abs() * X.norm(dim=0)
    assert torch.allclose(wanda.scores(W, X), S)
    pruned_max = S.masked_fill(keep, float("-inf")).amax(dim=1)  # (out,)
    kept_min = S.masked_fill(~keep, float("inf")).amin(dim=1)  # (out,)
    assert (pruned_max <= kept_min).all()  # the k lowest of each row


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("4:8", 4, 8)], ids=["2:4", "4:8"])
def test_nm_pattern_has_exactly_n_zeros_in_every_m(pattern, n, m):
    W, X = torch.randn(16, 64), torch.randn(32, 64)
    W_p, keep = wanda.prune_weight(W, X, pattern=pattern, return_mask=True)
    assert ((~keep).reshape(16, 64 // m, m).sum(dim=2) == n).all()
    assert ((W_p == 0).reshape(16, 64 // m, m).sum(dim=2) == n).all()
    S = (W.abs() * X.norm(dim=0)).reshape(16, 64 // m, m)  # (out, groups, m)
    pruned, kept = S.masked_fill(keep.reshape(S.shape), -1), S.masked_fill(~keep.reshape(S.shape), float("inf"))
    assert (pruned.amax(dim=2) <= kept.amin(dim=2)).all()  # the n lowest of each m


@pytest.mark.parametrize("pattern", [None, "2:4"], ids=["50%", "2:4"])
def test_flat_inputs_give_magnitude_pruning_per_row(pattern):
    """X all ones: every ||X_j|| is equal (2, exactly), so the score is |W| and Wanda is magnitude per row."""
    W = torch.randn(10, 48)
    W_p = wanda.prune_weight(W, torch.ones(4, 48), pattern=pattern)
    if pattern is None:
        smallest = W.abs().topk(24, dim=1, largest=False).indices  # (out, 24) magnitude per row, independently
        expected = W.scatter(1, smallest, 0.0)
    else:
        expected = W * nm_mask(W.abs(), 2, 4)
    assert torch.equal(W_p, expected)


def test_a_small_weight_on_an_outlier_feature_survives():
    """The reason for ||X_j||: column 0 carries a 100x input, so even its smallest weights are kept."""
    W = torch.randn(8, 32)
    W[:, 0] = 0.01
    X = torch.randn(64, 32)
    X[:, 0] *= 100
    assert (wanda.prune_weight(W, X, 0.5)[:, 0] != 0).all()
    assert (magnitude_prune(W, 0.5)[:, 0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device_kept_and_sparsity_zero_is_identity(dtype, device):
    W, X = torch.randn(8, 32, dtype=dtype, device=device), torch.randn(16, 32, dtype=dtype, device=device)
    assert torch.equal(wanda.prune_weight(W, X, 0.0), W)
    W_p = wanda.prune_weight(W, X, 0.5)
    assert W_p.dtype == dtype and W_p.device == W.device and int((W_p == 0).sum()) == 8 * 16


# ---- the reference ----

@pytest.mark.parametrize("sparsity,pattern", [(0.5, None), (0.3, None), (0.6, None), (0.5, "2:4"), (0.5, "4:8")],
                         ids=["50%", "30%", "60%", "2:4", "4:8"])
def test_equals_reference_on_random_layers(sparsity, pattern):
    W, X = torch.randn(48, 128), ar1_inputs(96, 128) * torch.rand(128) * 3
    n, m = (0, 0) if pattern is None else map(int, pattern.split(":"))
    W_ref, keep_ref = reference_wanda(W, X.split(32), sparsity, n, m)  # three batches, as the reference accumulates
    W_p, keep = wanda.prune_weight(W, X, sparsity, pattern, return_mask=True)
    assert torch.equal(keep, keep_ref)
    assert torch.equal(W_p, W_ref)


@pytest.mark.parametrize("name", MINILM_LAYERS)
@pytest.mark.parametrize("pattern", [None, "2:4", "4:8"], ids=["50%", "2:4", "4:8"])
def test_equals_reference_on_real_minilm_layers(minilm_layers, name, pattern):
    W, X = minilm_layers[name]
    n, m = (0, 0) if pattern is None else map(int, pattern.split(":"))
    W_ref, keep_ref = reference_wanda(W, [X], 0.5, n, m)
    W_p, keep = wanda.prune_weight(W, X, 0.5, pattern, return_mask=True)
    assert torch.equal(keep, keep_ref)
    assert torch.equal(W_p, W_ref)


@pytest.mark.real_llm
def test_real_smollm2_layers_equal_reference_and_beat_magnitude(llm_cache):
    """SmolLM2 layers with 1024 tokens of the course's generated text. Its Q4_1 weights hold exact zeros: where
    zero weights tie, the reference's topk and our stable sort may pick different ones, and no weight changes."""
    model, tokenizer = llm.load_llm(progress=False)
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "model.layers.9.self_attn.o_proj"]
    ids = tokenizer(llm.course_text("generated"), return_tensors="pt")["input_ids"][:, :1024]
    inputs = capture_inputs(model, names, [{"input_ids": ids}])
    for name in names:
        W, X = model.get_submodule(name).weight.detach(), inputs[name]
        for pattern, n, m in ((None, 0, 0), ("2:4", 2, 4), ("4:8", 4, 8)):
            W_ref, keep_ref = reference_wanda(W, [X], 0.5, n, m)
            W_p, keep = wanda.prune_weight(W, X, 0.5, pattern, return_mask=True)
            assert torch.equal(W_p, W_ref) and (W[keep != keep_ref] == 0).all(), (name, pattern)
            magnitude = magnitude_prune(W, 0.5) if pattern is None else W * nm_mask(W.abs(), n, m)
            assert output_error(X, W, W_p) < output_error(X, W, magnitude), (name, pattern)


# ---- magnitude beaten on real layers ----

@pytest.mark.parametrize("name", MINILM_LAYERS[1:])
@pytest.mark.parametrize("pattern", [None, "2:4"], ids=["50%", "2:4"])
def test_beats_magnitude_on_real_layers(minilm_layers, name, pattern):
    W, X = minilm_layers[name]
    magnitude = magnitude_prune(W, 0.5) if pattern is None else W * nm_mask(W.abs(), 2, 4)
    assert output_error(X, W, wanda.prune_weight(W, X, pattern=pattern)) < 0.97 * output_error(X, W, magnitude)


# ---- bad input ----

BAD = [
    ("sparsity-1", dict(sparsity=1.0), ValueError, "sparsity must be"),
    ("sparsity-negative", dict(sparsity=-0.1), ValueError, "sparsity must be"),
    ("sparsity-nan", dict(sparsity=float("nan")), ValueError, "finite"),
    ("sparsity-str", dict(sparsity="half"), TypeError, "number"),
    ("pattern-3:4", dict(pattern="3:4"), ValueError, "pattern must be one of"),
    ("pattern-sparsity", dict(pattern="2:4", sparsity=0.3), ValueError, "removes 2 of every 4"),
    ("return-mask", dict(return_mask=1), TypeError, "return_mask"),
    ("X-shape", dict(X=torch.randn(16, 30)), ValueError, "X must have shape"),
    ("X-nan", dict(X=torch.full((16, 32), float("nan"))), ValueError, "NaN"),
    ("X-none", dict(X=None), ValueError, "needs calibration inputs"),
    ("W-1d", dict(W=torch.randn(32)), ValueError, "2-D"),
]


@pytest.mark.parametrize("case,kwargs,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused(case, kwargs, error, match):
    args = dict(W=torch.randn(8, 32), X=torch.randn(16, 32)) | kwargs
    with pytest.raises(error, match=match):
        wanda.prune_weight(**args)


def test_pattern_must_divide_in_features():
    with pytest.raises(ValueError, match="multiple of 8"):
        wanda.prune_weight(torch.randn(4, 36), torch.randn(8, 36), pattern="4:8")


MASK_BAD = [
    ("row-k-too-big", lambda: row_mask(torch.rand(4, 8), 9), ValueError, "k must be"),
    ("row-k-float", lambda: row_mask(torch.rand(4, 8), 2.0), ValueError, "k must be"),
    ("row-1d", lambda: row_mask(torch.rand(8), 2), ValueError, "2-D"),
    ("nm-m-divides", lambda: nm_mask(torch.rand(4, 10), 2, 4), ValueError, "m dividing"),
    ("nm-n-above-m", lambda: nm_mask(torch.rand(4, 8), 5, 4), ValueError, "1 <= n < m"),
    ("nm-nan", lambda: nm_mask(torch.full((4, 8), float("nan")), 2, 4), ValueError, "NaN"),
]


@pytest.mark.parametrize("case,call,error,match", MASK_BAD, ids=[b[0] for b in MASK_BAD])
def test_mask_helpers_refuse_bad_input(case, call, error, match):
    with pytest.raises(error, match=match):
        call()
