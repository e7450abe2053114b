"""SparseGPT: exact properties (identity at sparsity 0, magnitude when H ~ I, GPTQ when only quantizing), the
reference, and magnitude and Wanda beaten.

Oracle: IST-DASLab/sparsegpt's SparseGPT.add_batch and SparseGPT.fasterprune (sparsegpt.py) with the min-max
Quantizer of its quant.py, and locuslab/wanda's prune_magnitude (lib/prune.py), ported below. mask="block" and
the n:m patterns are the reference's own rules and must equal it bit for bit; mask="row" (the default) is this
course's exact-per-row variant and is tested for its properties.
"""

import math

import pytest
import torch

from qlearn.compression.prune import magnitude_prune, nm_mask, row_mask
from qlearn.data import llm, models
from qlearn.inference.capture import capture_inputs
from qlearn.methods import gptq, sparsegpt, wanda
from tests.conftest import DEVICES

from .toys import ar1_inputs, orthogonal_inputs, output_error

MINILM = ["encoder.layer.0.attention.self.query", "encoder.layer.2.intermediate.dense", "encoder.layer.5.output.dense"]


# ---- the reference, ported: IST-DASLab/sparsegpt sparsegpt.py (SparseGPT) and quant.py (Quantizer, quantize) ----

def reference_hessian(batches, columns):
    """SparseGPT.add_batch over `batches` of a Linear layer's inputs: the running H = 2 X^T X / n."""
    H, nsamples = torch.zeros(columns, columns), 0
    for inp in batches:
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        H *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = math.sqrt(2 / nsamples) * inp.float()
        H += inp.matmul(inp.t())
    return H


def reference_quantizer(W, bits):
    """quant.py Quantizer.configure(bits, perchannel=True, sym=False, mse=False).find_params(W, weight=True)."""
    maxq = torch.tensor(2 ** bits - 1)
    tmp = torch.zeros(W.shape[0])
    xmin, xmax = torch.minimum(W.min(1)[0], tmp), torch.maximum(W.max(1)[0], tmp)
    tmp = (xmin == 0) & (xmax == 0)
    xmin[tmp], xmax[tmp] = -1, +1
    scale = (xmax - xmin) / maxq
    return scale.reshape(-1, 1), torch.round(-xmin / scale).reshape(-1, 1), maxq


def reference_quantize(x, scale, zero, maxq):
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def reference_inverse_factor(H, percdamp=.01):
    """The lines of SparseGPT.fasterprune that turn H (dead columns already fixed) into Hinv, upper Cholesky."""
    H = H.clone()
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(H.shape[0])
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    return H


def reference_fasterprune(W, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=.01, bits=None, Hinv=None):
    """SparseGPT.fasterprune on a weight W and the H that add_batch accumulated; returns (W, keep).

    Hinv=None computes it as the reference does; passing gptq.inverse_hessian_factor's runs the reference's loop
    on the very same factor (the two factors differ in the last bits: see test_inverse_factor_is_the_references).
    """
    W, H = W.clone().float(), H.clone()
    quantizer = reference_quantizer(W, bits) if bits is not None else None
    rows, columns = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Hinv = reference_inverse_factor(H, percdamp) if Hinv is None else Hinv
    pruned = torch.zeros_like(W, dtype=torch.bool)  # (not in the reference: the masks, collected for the test)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1) == 1
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i:(i + prunem)] ** 2 / (torch.diag(Hinv1)[i:(i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            if quantizer is not None:
                q = reference_quantize(q.unsqueeze(1), *quantizer).flatten()
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W, ~pruned


def reference_prune_magnitude(W, sparsity_ratio):
    """locuslab/wanda lib/prune.py prune_magnitude, unstructured: one threshold over the layer, |w| <= it pruned."""
    W_metric = torch.abs(W)
    thresh = torch.sort(W_metric.flatten())[0][int(W.numel() * sparsity_ratio)]
    return W_metric > thresh


@pytest.fixture(scope="module")
def minilm_layers():
    """{name: (W, X)} for three MiniLM layers, X the inputs they receive for the course's eight sentences."""
    model, tokenizer = models.load_model()
    X = capture_inputs(model, MINILM, [tokenizer(list(models.SENTENCES), padding=True, return_tensors="pt")])
    return {name: (model.get_submodule(name).weight.detach(), X[name]) for name in MINILM}


def distinct_weight(out, columns, seed=0):
    """W (out, columns) of distinct magnitudes k / 64 with random signs: w^2 / c keeps their order exactly."""
    g = torch.Generator().manual_seed(seed)
    magnitudes = (torch.randperm(out * columns, generator=g) + 1).float() / 64
    signs = torch.randint(0, 2, (out * columns,), generator=g) * 2 - 1
    return (magnitudes * signs).reshape(out, columns)  # (out, columns)


# ---- properties ----

@pytest.mark.parametrize("device", DEVICES)
def test_sparsity_zero_returns_w(device):
    W, X = torch.randn(24, 200, device=device), ar1_inputs(400, 200).to(device)
    assert torch.equal(sparsegpt.prune_weight(W, X, 0.0, block_size=64), W)
    half = sparsegpt.prune_weight(W.half(), X.half(), 0.0)
    assert half.dtype == torch.float16 and torch.equal(half, W.half())


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.73], ids=lambda s: f"s={s}")
@pytest.mark.parametrize("block_size", [128, 50, 7], ids=lambda b: f"B{b}")
def test_row_mask_prunes_exactly_int_in_times_sparsity_of_every_row(sparsity, block_size):
    W, X = torch.randn(16, 200), ar1_inputs(300, 200)
    W_p, keep = sparsegpt.prune_weight(W, X, sparsity, block_size=block_size, return_mask=True)
    assert ((~keep).sum(dim=1) == int(200 * sparsity)).all()
    assert ((W_p == 0) == ~keep).all()  # pruned weights are 0, the kept ones (updated) are not


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("4:8", 4, 8)], ids=["2:4", "4:8"])
@pytest.mark.parametrize("bits", [None, 4], ids=["float", "joint-4bit"])
def test_nm_pattern_has_exactly_n_zeros_in_every_m(pattern, n, m, bits):
    W, X = torch.randn(16, 128), ar1_inputs(256, 128)
    W_p, keep = sparsegpt.prune_weight(W, X, pattern=pattern, block_size=64, bits=bits, return_mask=True)
    assert ((~keep).reshape(16, 128 // m, m).sum(dim=2) == n).all()
    assert (W_p[~keep] == 0).all()


def test_h_proportional_to_identity_gives_magnitude_pruning():
    """X^T X = tokens * I exactly: U is diagonal, so no update, and w^2 / U_jj^2 orders as |w|: magnitude pruning."""
    W, X = distinct_weight(16, 128), orthogonal_inputs(256, 128)
    one_block = dict(block_size=128, damp=0.0)
    assert torch.equal(sparsegpt.prune_weight(W, X, 0.5, **one_block), W * row_mask(W.abs(), 64))
    assert torch.equal(sparsegpt.prune_weight(W, X, 0.5, mask="block", **one_block),
                       W * reference_prune_magnitude(W, 0.5))
    assert torch.equal(sparsegpt.prune_weight(W, X, pattern="2:4", **one_block), W * nm_mask(W.abs(), 2, 4))
    # Blocks of 48, 48, 32 columns: each row prunes int(48 * .3) = 14, int(96 * .3) - 14 = 14, int(128 * .3) - 28 = 10
    # of them, by magnitude inside each block.
    blocks = torch.cat([row_mask(block.abs(), k) for block, k in zip(W.split(48, dim=1), (14, 14, 10))], dim=1)
    assert torch.equal(sparsegpt.prune_weight(W, X, 0.3, block_size=48, damp=0.01), W * blocks)


@pytest.mark.parametrize("bits,group_size,symmetric", [(4, None, False), (4, 32, False), (3, 64, True), (8, 16, False)],
                         ids=["4bit-row", "4bit-g32", "3bit-g64-sym", "8bit-g16"])
def test_joint_mode_at_sparsity_zero_is_gptq(bits, group_size, symmetric):
    W, X = torch.randn(32, 192), ar1_inputs(512, 192)
    ours = sparsegpt.prune_weight(W, X, 0.0, bits=bits, group_size=group_size, symmetric=symmetric, block_size=64)
    expected = gptq.quantize_weight(W, X, bits=bits, group_size=group_size, symmetric=symmetric, block_size=64)
    assert torch.equal(ours, expected.dequantize())


def test_joint_mode_keeps_pruned_zeros_and_the_rest_on_each_groups_grid():
    W, X = torch.randn(8, 128), ar1_inputs(256, 128)
    W_p, keep = sparsegpt.prune_weight(W, X, 0.5, bits=3, group_size=32, return_mask=True)
    assert (W_p[~keep] == 0).all() and int((~keep).sum()) == 8 * 64
    levels = W_p.reshape(8, 4, 32)  # (out, groups, g)
    for row in levels.reshape(32, 32):
        assert len(torch.unique(row)) <= 2 ** 3  # eight grid values (0 among them) per group


def test_block_mask_at_sparsity_zero_still_prunes_one_weight_per_block():
    """The reference's threshold prunes every score <= sorted[int(numel * s)]: at s = 0, the lowest of each block."""
    W, X = torch.randn(8, 96), ar1_inputs(192, 96)
    _, keep = sparsegpt.prune_weight(W, X, 0.0, mask="block", block_size=32, return_mask=True)
    assert [int((~block).sum()) for block in keep.split(32, dim=1)] == [1, 1, 1]


# ---- the reference ----

def test_hessian_is_the_references_running_average_up_to_its_scale():
    """The reference divides by the number of sequences it saw, not of tokens: H differs by a factor tokens / 3,
    which changes nothing (the damping is relative, the scores and updates scale out)."""
    X = ar1_inputs(300, 64)
    assert torch.allclose(gptq.hessian(X).float() * 300 / 3, reference_hessian(X.split(100), 64), rtol=1e-4, atol=1e-4)


def test_inverse_factor_is_the_references():
    """gptq's shared factor is the reference's times sqrt(mean(diag H)) (gptq factors H / mean(diag H), which
    only rescales U), up to float rounding."""
    H = gptq.hessian(ar1_inputs(300, 200)).float()
    U = gptq.inverse_hessian_factor(H, 0.01)
    expected = reference_inverse_factor(H, 0.01) * H.diagonal().mean().sqrt()
    assert torch.allclose(U, expected, rtol=1e-3, atol=1e-4)  # ours runs in float64, the reference in float32


CASES = [(0.5, None, None), (0.3, None, None), (0.5, "2:4", None), (0.5, "4:8", None), (0.5, None, 4),
         (0.5, "2:4", 3)]
CASE_IDS = ["50%", "30%", "2:4", "4:8", "50%-joint-4bit", "2:4-joint-3bit"]


def check_equals_reference(W, X, sparsity, pattern, bits, block_size=128):
    """The reference's loop and ours on one W, X and factor: the same masks and the same weights, bit for bit.

    A mask may differ only between equal scores, where the reference's topk and our stable sort pick different
    columns: that happens between weights that are 0 already (SmolLM2 has some), and changes no weight.
    """
    n, m = (0, 0) if pattern is None else map(int, pattern.split(":"))
    H = gptq.hessian(X)
    W_ref, keep_ref = reference_fasterprune(W, H, sparsity, n, m, block_size, bits=bits,
                                            Hinv=gptq.inverse_hessian_factor(H, 0.01))
    W_p, keep = sparsegpt.prune_weight(W, X, sparsity, pattern, block_size=block_size, bits=bits, mask="block",
                                       return_mask=True)
    assert (W[keep != keep_ref] == 0).all()
    assert torch.equal(W_p, W_ref.to(W.dtype))


@pytest.mark.parametrize("sparsity,pattern,bits", CASES, ids=CASE_IDS)
def test_equals_reference_on_random_layers(sparsity, pattern, bits):
    check_equals_reference(torch.randn(48, 200), ar1_inputs(400, 200), sparsity, pattern, bits, block_size=64)


REAL_CASES = [(MINILM[0], 0.5, None, None), (MINILM[0], 0.5, "2:4", None), (MINILM[1], 0.5, None, None),
              (MINILM[1], 0.5, "4:8", None), (MINILM[2], 0.5, None, 4)]


REAL_IDS = ["query-50%", "query-2:4", "intermediate-50%", "intermediate-4:8", "output-50%-joint-4bit"]


@pytest.mark.parametrize("name,sparsity,pattern,bits", REAL_CASES, ids=REAL_IDS)
def test_equals_reference_on_real_minilm_layers(minilm_layers, name, sparsity, pattern, bits):
    W, X = minilm_layers[name]
    check_equals_reference(W, X, sparsity, pattern, bits)


def test_close_to_the_whole_reference_with_its_own_factor(minilm_layers):
    """End to end, the reference's own H^-1 factor: the last-bit differences may move a few near-tied choices."""
    W, X = minilm_layers[MINILM[1]]
    W_ref, keep_ref = reference_fasterprune(W, reference_hessian([X], W.shape[1]), 0.5)
    W_p, keep = sparsegpt.prune_weight(W, X, 0.5, mask="block", return_mask=True)
    assert float((keep != keep_ref).float().mean()) < 1e-3
    assert output_error(X, W, W_p) == pytest.approx(output_error(X, W, W_ref), rel=1e-3)


# ---- magnitude and Wanda beaten on real layers ----

@pytest.mark.parametrize("name", MINILM)
@pytest.mark.parametrize("pattern", [None, "2:4"], ids=["50%", "2:4"])
def test_beats_magnitude_and_wanda_on_real_layers(minilm_layers, name, pattern):
    W, X = minilm_layers[name]
    magnitude = magnitude_prune(W, 0.5) if pattern is None else W * nm_mask(W.abs(), 2, 4)
    ours = output_error(X, W, sparsegpt.prune_weight(W, X, pattern=pattern))
    assert ours < 0.7 * output_error(X, W, magnitude)
    assert ours < 0.7 * output_error(X, W, wanda.prune_weight(W, X, pattern=pattern))


@pytest.mark.real_llm
def test_real_smollm2_layers_equal_reference_and_beat_magnitude_and_wanda(llm_cache):
    """SmolLM2 layers with 1024 tokens of the course's generated text: the reference's loop, and the baselines."""
    model, tokenizer = llm.load_llm(progress=False)
    names = ["model.layers.0.self_attn.q_proj", "model.layers.9.self_attn.o_proj"]
    ids = tokenizer(llm.course_text("generated"), return_tensors="pt")["input_ids"][:, :1024]
    inputs = capture_inputs(model, names, [{"input_ids": ids}])
    for name in names:
        W, X = model.get_submodule(name).weight.detach(), inputs[name]
        for pattern, bits in ((None, None), ("2:4", None), (None, 4)):
            check_equals_reference(W, X, 0.5, pattern, bits)
        for pattern in (None, "2:4"):
            magnitude = magnitude_prune(W, 0.5) if pattern is None else W * nm_mask(W.abs(), 2, 4)
            ours = output_error(X, W, sparsegpt.prune_weight(W, X, pattern=pattern))
            assert ours < 0.8 * output_error(X, W, magnitude), (name, pattern)
            assert ours < 0.8 * output_error(X, W, wanda.prune_weight(W, X, pattern=pattern)), (name, pattern)


# ---- bad input ----

BAD = [
    ("sparsity-1", dict(sparsity=1.0), ValueError, "sparsity must be"),
    ("sparsity-inf", dict(sparsity=float("inf")), ValueError, "finite"),
    ("pattern-1:2", dict(pattern="1:2"), ValueError, "pattern must be one of"),
    ("pattern-sparsity", dict(pattern="4:8", sparsity=0.75), ValueError, "removes 4 of every 8"),
    ("block-size-pattern", dict(pattern="4:8", block_size=12), ValueError, "multiple of 8"),
    ("block-size-0", dict(block_size=0), ValueError, "block_size"),
    ("damp-negative", dict(damp=-0.1), ValueError, "damp"),
    ("damp-nan", dict(damp=float("nan")), ValueError, "damp"),
    ("bits-1", dict(bits=1), ValueError, "bits"),
    ("group-size-no-bits", dict(group_size=16), ValueError, "pass bits="),
    ("group-size-divides", dict(bits=4, group_size=24), ValueError, "does not divide"),
    ("mask", dict(mask="layer"), ValueError, "mask must be one of"),
    ("X-shape", dict(X=torch.randn(64, 31)), ValueError, "X must have shape"),
    ("X-inf", dict(X=torch.full((64, 32), float("inf"))), ValueError, "NaN or inf"),
    ("W-int", dict(W=torch.ones(8, 32, dtype=torch.int64)), TypeError, "floating-point"),
    ("singular-H", dict(X=torch.randn(4, 32), damp=0.0), ValueError, "not positive definite"),
]


@pytest.mark.parametrize("case,kwargs,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused(case, kwargs, error, match):
    args = dict(W=torch.randn(8, 32), X=torch.randn(64, 32)) | kwargs
    with pytest.raises(error, match=match):
        sparsegpt.prune_weight(**args)
