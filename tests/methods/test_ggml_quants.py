"""GGML block formats against gguf-py (bytes and values) and the k-quant search against a loop transcription.

gguf-py quantizes the legacy types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) bit-exactly as ggml-quants.c does, and
dequantizes every type; it cannot quantize k-quants, so for those the oracle is `_ref_q4_k` / `_ref_q6_k`
below: quantize_row_q4_K_ref and quantize_row_q6_K_ref of llama.cpp written out block by block, in
float32 scalars summed in C's order (slow, so it runs on a few super-blocks).
"""

import gguf
import numpy as np
import pytest
import torch

from qlearn.data.llm import smollm2_gguf
from qlearn.data.models import minilm_activation, minilm_weight
from qlearn.methods import ggml_kquants, ggml_quants
from qlearn.methods.ggml_quants import dequantize_blocks, importance, pack_blocks, quantize_blocks, quantize_weight

LEGACY = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
KQUANTS = ["Q4_K", "Q6_K"]
GT = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def smollm2():
    """name -> (tensor type, raw block bytes, W (out, in) float32 dequantized by gguf-py) for a few tensors."""
    reader = gguf.GGUFReader(str(smollm2_gguf()))
    wanted = ("blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.3.attn_v.weight", "token_embd.weight")
    out = {}
    for t in reader.tensors:
        if t.name in wanted:
            data = np.array(t.data[:1024])  # (rows, bytes): the embedding's first 1024 rows are enough
            out[t.name] = (t.tensor_type.name, data, gguf.quants.dequantize(data, t.tensor_type))
    return out


def _rel(W, W_hat):
    return float((W - W_hat).norm() / W.norm())


# ---- legacy types: bytes equal gguf-py's ---------------------------------------------------------------------

@pytest.mark.parametrize("qtype", LEGACY)
def test_legacy_bytes_equal_gguf_on_real_weights(qtype, smollm2):
    weights = [minilm_weight(), minilm_weight("encoder.layer.0.output.dense")]
    weights += [torch.from_numpy(smollm2[n][2]) for n in ("blk.0.attn_q.weight", "blk.0.ffn_down.weight")]
    for W in weights:
        mine = quantize_blocks(W, qtype)
        assert mine.dtype == torch.uint8
        np.testing.assert_array_equal(mine.numpy(), gguf.quants.quantize(W.numpy(), GT[qtype]))


def _edge_rows():
    g = torch.Generator().manual_seed(1)
    rows = [torch.zeros(32), torch.full((32,), 0.3), torch.full((32,), -7.0),
            torch.cat([torch.tensor([127.0]), torch.arange(31) - 15.5]),  # Q8_0 d = 1: ties at .5 round away
            torch.cat([torch.tensor([-8.0]), (torch.arange(31) % 16) - 7.5]),  # Q4_0 d = 1: x / d + 8.5 exact
            torch.cat([torch.tensor([0.0, 15.0]), torch.arange(30) * 0.5]),  # Q4_1 d = 1: codes at .5
            torch.cat([torch.tensor([8.0, -8.0]), torch.randn(30, generator=g)]),  # tied extremes, + first
            torch.cat([torch.tensor([-8.0, 8.0]), torch.randn(30, generator=g)]),  # tied extremes, - first
            (torch.rand(32, generator=g) * 2 - 1) * ggml_quants.FP16_MAX,  # the largest |W| allowed
            torch.randn(32, generator=g) * 1e-6, torch.randn(32, generator=g) * 1e-30,  # fp16 d underflows
            torch.tensor([1e-30] * 16 + [-1e-30] * 16)]
    return torch.stack(rows).float()  # (12, 32)


@pytest.mark.parametrize("qtype", LEGACY)
def test_legacy_bytes_equal_gguf_on_edge_cases(qtype):
    W = _edge_rows()
    mine = quantize_blocks(W, qtype)
    np.testing.assert_array_equal(mine.numpy(), gguf.quants.quantize(W.numpy(), GT[qtype]))
    W_hat = dequantize_blocks(mine, qtype, W.shape)
    assert torch.isfinite(W_hat).all()
    assert torch.equal(W_hat[0], torch.zeros(32))  # an all-zero block stays exactly zero


# ---- dequantize equals gguf-py's for every type --------------------------------------------------------------

def _random_blocks(qtype, n, seed=0):
    """n random valid blocks: random bytes, with every fp16 field a finite value of either sign."""
    g = np.random.default_rng(seed)
    block, nbytes = ggml_quants.BLOCK_BYTES[qtype]
    data = g.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    halves = (g.standard_normal((n, 2)) * 0.02).astype(np.float16).view(np.uint8)  # (n, 4)
    fields = {"Q6_K": [208], "Q4_K": [0, 2], "Q4_1": [0, 2], "Q5_1": [0, 2]}.get(qtype, [0])
    for k, at in enumerate(fields):
        data[:, at:at + 2] = halves[:, 2 * k:2 * k + 2]
    return data, block


@pytest.mark.parametrize("qtype", LEGACY + KQUANTS)
def test_dequantize_equals_gguf_on_random_blocks(qtype):
    data, block = _random_blocks(qtype, 64)
    shape = (4, 16 * block)
    mine = dequantize_blocks(torch.from_numpy(data), qtype, shape)
    ref = gguf.quants.dequantize(data.reshape(4, -1), GT[qtype])
    assert mine.shape == shape and mine.dtype == torch.float32
    np.testing.assert_array_equal(mine.numpy(), ref)


@pytest.mark.parametrize("qtype", KQUANTS)
def test_dequantize_k_quant_of_own_blocks_equals_gguf(qtype):
    W = minilm_weight("encoder.layer.0.output.dense")[:64]  # (64, 1536)
    data = quantize_blocks(W, qtype)
    np.testing.assert_array_equal(dequantize_blocks(data, qtype, W.shape).numpy(),
                                  gguf.quants.dequantize(data.numpy(), GT[qtype]))


def test_dequantize_reads_the_bundled_gguf_file(smollm2):
    for name, (qtype, data, ref) in smollm2.items():
        mine = dequantize_blocks(torch.from_numpy(data), qtype, ref.shape)
        np.testing.assert_array_equal(mine.numpy(), ref, err_msg=name)


def test_smollm2_is_already_q4_1_so_requantizing_to_q4_1_is_lossless(smollm2):
    """The course's model trap: its weights were Q4_1 before we got them, so Q4_1 gives them back exactly."""
    qtype, data, ref = smollm2["blk.0.ffn_down.weight"]
    assert qtype == "Q4_1"
    W = torch.from_numpy(ref)  # (576, 1536)
    data_again = quantize_blocks(W, "Q4_1")
    np.testing.assert_array_equal(data_again.numpy(), data)  # even the file's bytes come back
    assert _rel(W, dequantize_blocks(data_again, "Q4_1", W.shape)) == 0.0
    assert _rel(W, dequantize_blocks(quantize_blocks(W, "Q4_0"), "Q4_0", W.shape)) > 0.05  # another grid is not
    assert _rel(W, dequantize_blocks(quantize_blocks(W, "Q4_K"), "Q4_K", W.shape)) > 0.0


@pytest.mark.parametrize("qtype", LEGACY)
def test_pack_blocks_writes_given_codes_and_scales(qtype):
    """A grid found elsewhere (GPTQ's) goes in as it is: dequantized = fp16(d) * (q - offset) + fp16(m)."""
    g = torch.Generator().manual_seed(3)
    lo, hi = (-128, 127) if qtype == "Q8_0" else (0, 2 ** int(qtype[1]) - 1)
    q = torch.randint(lo, hi + 1, (6, 64), generator=g)
    d, m = torch.rand(6, 2, generator=g) * 0.01, -torch.rand(6, 2, generator=g) * 0.1
    offset = {"Q4_0": 8, "Q5_0": 16}.get(qtype, 0)
    has_m = qtype.endswith("_1")
    data = pack_blocks(q, d, m if has_m else None, qtype)
    per_weight = (q - offset).float().reshape(6, 2, 32) * d.half().float()[..., None]  # (6, 2 blocks, 32)
    expected = per_weight + (m.half().float()[..., None] if has_m else 0.0)
    assert torch.equal(dequantize_blocks(data, qtype, (6, 64)), expected.reshape(6, 64))
    with pytest.raises(ValueError, match=f"codes must be in {lo}..{hi}"):
        pack_blocks(q + hi + 1, d, m if has_m else None, qtype)


# ---- k-quants: the search against a block-by-block transcription of llama.cpp -------------------------------

F = np.float32


def _nearest(v):
    return int(np.rint(F(v)))  # nearest_int: the 1.5 * 2^23 trick rounds half to even


def _ref_qkx2(x, w, nmax, rmin, rdelta, nstep):
    """make_qkx2_quants, sequential float32: returns scale, the_min, L."""
    lo, hi = F(min(x.min(), 0)), F(x.max())
    sum_w, sum_x = F(0), F(0)
    for xi, wi in zip(x, w):
        sum_w, sum_x = F(sum_w + wi), F(sum_x + F(wi * xi))
    if hi == lo:
        return F(0), F(-lo), [0] * len(x)
    iscale = F(F(nmax) / F(hi - lo))
    scale = F(F(1) / iscale)
    L = [max(0, min(nmax, _nearest(iscale * F(xi - lo)))) for xi in x]
    best = F(0)
    for xi, wi, li in zip(x, w, L):
        best = F(best + F(wi * F(F(F(scale * li) + lo) - xi) ** 2))
    for s in range(nstep + 1):
        iscale = F(F(F(F(rmin) + F(F(rdelta) * s)) + nmax) / F(hi - lo))
        La = [max(0, min(nmax, _nearest(iscale * F(xi - lo)))) for xi in x]
        sl, sl2, sxl = F(0), F(0), F(0)
        for xi, wi, li in zip(x, w, La):
            sl, sl2, sxl = F(sl + F(wi * li)), F(sl2 + F(F(wi * li) * li)), F(sxl + F(F(wi * li) * xi))
        D = F(F(sum_w * sl2) - F(sl * sl))
        if D > 0:
            this_scale = F(F(F(sum_w * sxl) - F(sum_x * sl)) / D)
            this_min = F(F(F(sl2 * sum_x) - F(sl * sxl)) / D)
            if this_min > 0:
                this_min, this_scale = F(0), F(sxl / sl2)
            err = F(0)
            for xi, wi, li in zip(x, w, La):
                err = F(err + F(wi * F(F(F(this_scale * li) + this_min) - xi) ** 2))
            if err < best:
                L, best, scale, lo = La, err, this_scale, this_min
    return scale, F(-lo), L


def _ref_qp(v, nmax, w):
    """make_qp_quants: non-negative sub-block scales v onto d * l, l in 0..nmax, sequential float32."""
    top = F(max(v))
    if top < 1e-15:
        return F(0), [0] * len(v)

    def mse(iscale, clip):
        scale, err = F(1 / iscale), F(0)
        for vi, wi in zip(v, w):
            li = _nearest(iscale * vi)
            err = F(err + F(wi * F(vi - F(scale * (min(nmax, li) if clip else li))) ** 2))
        return err

    iscale = F(nmax / top)
    best = mse(iscale, False)
    for s in [-4, -3, -2, -1, 1, 2, 3, 4]:
        iscale_s = F(F(F(F(0.1) * s) + nmax) / top)
        err = mse(iscale_s, True)
        if err < best:
            best, iscale = err, iscale_s
    L = [min(nmax, _nearest(iscale * vi)) for vi in v]
    slx, sl2 = F(0), F(0)
    for vi, wi, li in zip(v, w, L):
        slx, sl2 = F(slx + F(F(wi * vi) * li)), F(sl2 + F(F(wi * li) * li))
    for _ in range(5):
        changed = 0
        for i, (vi, wi) in enumerate(zip(v, w)):
            s_lx, s_l2 = F(slx - F(F(wi * vi) * L[i])), F(sl2 - F(F(wi * L[i]) * L[i]))
            if s_lx > 0 and s_l2 > 0:
                new = min(nmax, _nearest(F(F(vi * s_l2) / s_lx)))
                if new != L[i]:
                    s_lx, s_l2 = F(s_lx + F(F(wi * vi) * new)), F(s_l2 + F(F(wi * new) * new))
                    if F(F(s_lx * s_lx) * sl2) > F(F(slx * slx) * s_l2):
                        L[i], slx, sl2, changed = new, s_lx, s_l2, changed + 1
        if not changed:
            break
    return (F(slx / sl2) if sl2 > 0 else F(0)), L


def _ref_q4_k(x, qw=None):
    """quantize_row_q4_K_ref (qw None) or quantize_row_q4_K_impl for one super-block x (256,) -> 144 bytes."""
    scales, mins, L, sw = [], [], [], []
    sigma2 = F(F(2 * F(sum(F(v * v) for v in x))) / 256)
    for j in range(8):
        xs = x[32 * j:32 * j + 32]
        if qw is None:
            av = F(np.sqrt(F(sum(F(v * v) for v in xs) / 32)))
            sc, mn, Lj = _ref_qkx2(xs, [F(av + abs(v)) for v in xs], 15, -1.0, 0.1, 20)
        else:
            w = [F(q * np.sqrt(F(sigma2 + F(v * v)))) for q, v in zip(qw[32 * j:32 * j + 32], xs)]
            sw.append(F(sum(w, F(0))))
            sc, mn, Lj = _ref_qkx2(xs, w, 15, -0.9, 0.05, 36)  # make_qkx3: the same walk, other steps
        scales.append(sc), mins.append(mn), L.extend(Lj)
    if qw is None:
        top_sc, top_mn = max(max(scales), F(0)), max(max(mins), F(0))
        inv_sc = F(63 / top_sc) if top_sc > 0 else F(0)
        inv_mn = F(63 / top_mn) if top_mn > 0 else F(0)
        ls = [min(63, _nearest(inv_sc * s)) for s in scales]
        lm = [min(63, _nearest(inv_mn * m)) for m in mins]
        d, dmin = np.float16(F(top_sc / F(63))), np.float16(F(top_mn / F(63)))
    else:
        (d, ls), (dmin, lm) = _ref_qp(scales, 63, sw), _ref_qp(mins, 63, sw)
        d, dmin = np.float16(d), np.float16(dmin)
    packed = [0] * 12
    for j in range(8):
        if j < 4:
            packed[j], packed[j + 4] = ls[j], lm[j]
        else:
            packed[j + 4] = (ls[j] & 15) | ((lm[j] & 15) << 4)
            packed[j - 4] |= (ls[j] >> 4) << 6
            packed[j] |= (lm[j] >> 4) << 6
    for j in range(8):
        dd, dm = F(F(d) * ls[j]), F(F(dmin) * lm[j])
        if dd:
            for i in range(32):
                L[32 * j + i] = max(0, min(15, _nearest(F(F(x[32 * j + i] + dm) / dd))))
    qs = [L[64 * c + i] | (L[64 * c + 32 + i] << 4) for c in range(4) for i in range(32)]
    return np.concatenate([np.array([d, dmin]).view(np.uint8), np.array(packed + qs, dtype=np.uint8)])


def _ref_qx(x, nmax, qw=None):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, qw), sequential float32: returns scale, L + nmax."""
    k = int(np.argmax(np.abs(x)))  # first of the tied largest
    top = x[k]
    if abs(top) < 1e-15:
        return F(0), [0] * len(x)

    def fit(iscale):
        L = [max(-nmax, min(nmax - 1, _nearest(iscale * xi))) for xi in x]
        slx, sl2 = F(0), F(0)
        for i, (xi, li) in enumerate(zip(x, L)):
            w = F(xi * xi) if qw is None else F(qw[i])
            slx, sl2 = F(slx + F(F(w * xi) * li)), F(sl2 + F(F(w * li) * li))
        return L, slx, sl2

    L, slx, sl2 = fit(F(-nmax / top))
    scale = F(slx / sl2) if sl2 else F(0)
    best = F(scale * slx)
    for s in [*range(-9, 0), *range(1, 10)]:
        La, slx, sl2 = fit(F(F(-F(nmax + F(F(0.1) * s))) / top))
        if sl2 > 0 and F(slx * slx) > F(best * sl2):
            L, scale = La, F(slx / sl2)
            best = F(scale * slx)
    return scale, [li + nmax for li in L]


def _ref_q6_k(x, qw=None):
    """quantize_row_q6_K_ref (qw None) or _impl for one super-block x (256,) float32 -> 210 bytes."""
    scales, L = [], []
    for j in range(16):
        sc, Lj = _ref_qx(x[16 * j:16 * j + 16], 32, None if qw is None else qw[16 * j:16 * j + 16])
        scales.append(sc), L.extend(Lj)
    top = scales[int(np.argmax(np.abs(scales)))]
    if abs(top) < 1e-15:
        return np.zeros(210, dtype=np.uint8)
    iscale = F(F(-128) / top)
    d = np.float16(F(1 / iscale))
    q_sc = [min(127, _nearest(iscale * s)) for s in scales]
    for j in range(16):
        dd = F(F(d) * q_sc[j])
        if dd:
            for i in range(16):
                L[16 * j + i] = max(-32, min(31, _nearest(F(x[16 * j + i] / dd)))) + 32
    ql, qh = [0] * 128, [0] * 64
    for h in range(2):
        for i in range(32):
            q = [L[128 * h + 32 * r + i] for r in range(4)]
            ql[64 * h + i] = (q[0] & 15) | ((q[2] & 15) << 4)
            ql[64 * h + 32 + i] = (q[1] & 15) | ((q[3] & 15) << 4)
            qh[32 * h + i] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6)
    return np.concatenate([np.array(ql + qh, dtype=np.uint8), np.array(q_sc, dtype=np.int8).view(np.uint8),
                           np.array([d]).view(np.uint8)])


@pytest.fixture(scope="module")
def minilm_X():
    """Real inputs (tokens, 1536) of MiniLM's layer-0 down projection, whose weight is (384, 1536)."""
    return minilm_activation()


@pytest.fixture(scope="module")
def super_blocks(smollm2, minilm_X):
    """12 real super-blocks (MiniLM's and SmolLM2's 1536-wide rows, one all-zero) and an imatrix for them."""
    W = torch.cat([minilm_weight("encoder.layer.0.output.dense")[:2, :1024].reshape(-1, 256),
                   torch.from_numpy(smollm2["blk.0.ffn_down.weight"][2][:1, :768]).reshape(-1, 256),
                   torch.zeros(1, 256)])  # (12, 256)
    return W, importance(minilm_X[:, :256])


@pytest.mark.parametrize("imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("qtype", KQUANTS)
def test_k_quant_search_matches_llama_cpp_transcription(qtype, imatrix, super_blocks):
    """The same bytes as the C search run block by block (float order may flip a near-tie), the same error."""
    W, imp = super_blocks
    qw = imp.numpy() if imatrix else None
    ref = np.stack([(_ref_q4_k if qtype == "Q4_K" else _ref_q6_k)(row, qw) for row in W.numpy()])
    mine = quantize_blocks(W, qtype, imp if imatrix else None).numpy()
    same = (mine == ref).all(1)
    assert same.sum() >= 10, f"{same.sum()} of {len(same)} super-blocks byte-identical"
    err_mine = _rel(W, dequantize_blocks(torch.from_numpy(mine), qtype, W.shape))
    err_ref = _rel(W, torch.from_numpy(gguf.quants.dequantize(ref, GT[qtype])))
    assert abs(err_mine - err_ref) <= 0.01 * err_ref


def test_scale_grid_search_matches_make_qp_quants():
    """The imatrix path puts the 8 sub-block scales on a 6-bit grid with make_qp_quants' sweeps: same grid."""
    g = torch.Generator().manual_seed(0)
    v, w = torch.rand(300, 8, generator=g) * 0.02, torch.rand(300, 8, generator=g) * 5
    d, L = ggml_kquants._search_scale_grid(v, w, 63)
    ref = [_ref_qp(v[i].numpy(), 63, w[i].numpy()) for i in range(300)]
    same = [r[1] == L[i].tolist() and np.float16(r[0]) == np.float16(float(d[i])) for i, r in enumerate(ref)]
    assert sum(same) >= 295  # without the 5 sweeps 30 of 300 differ


def test_k_quants_beat_legacy_types_of_the_same_size():
    """At 4.5 bits Q4_K beats Q4_0 on MiniLM's float weights; Q6_K (6.56 bits) beats Q5_1 (6.0 bits)."""
    W = minilm_weight("encoder.layer.0.output.dense")  # (384, 1536)
    err = {t: _rel(W, dequantize_blocks(quantize_blocks(W, t), t, W.shape)) for t in ("Q4_0", "Q4_K", "Q5_1", "Q6_K")}
    assert err["Q4_K"] < 0.9 * err["Q4_0"]
    assert err["Q6_K"] < err["Q5_1"]


# ---- the importance matrix ----------------------------------------------------------------------------------

def test_importance_is_the_diagonal_of_gptq_hessian():
    X = torch.randn(50, 64)
    torch.testing.assert_close(importance(X), torch.diagonal(X.T @ X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0"])
def test_imatrix_lowers_the_output_error(qtype, minilm_X):
    """Weighting the search by sum x^2 per column lowers ||X W^T - X W_hat^T|| on MiniLM's real inputs."""
    W = minilm_weight("encoder.layer.0.output.dense")[:96]  # (96, 1536)
    X = minilm_X  # (tokens, 1536)
    out = [torch.linalg.norm(X @ (W - dequantize_blocks(quantize_blocks(W, qtype, imatrix), qtype, W.shape)).T)
           for imatrix in (None, importance(X))]
    assert out[1] < out[0]


def test_imatrix_scale_does_not_change_the_codes():
    W = minilm_weight("encoder.layer.0.output.dense")[:8]
    imatrix = importance(torch.randn(40, 1536))
    assert torch.equal(quantize_blocks(W, "Q4_K", imatrix), quantize_blocks(W, "Q4_K", imatrix / 40))


# ---- the weight-method wrapper and the public edge ------------------------------------------------------------

@pytest.mark.parametrize("qtype, bits", [("Q8_0", 8.5), ("Q4_0", 4.5), ("Q4_1", 5.0), ("Q5_0", 5.5), ("Q5_1", 6.0),
                                         ("Q4_K", 4.5), ("Q6_K", 6.5625)])
def test_quantize_weight_counts_the_block_bytes(qtype, bits):
    W = torch.randn(8, 512)
    qw = quantize_weight(W, torch.randn(20, 512), type=qtype)
    assert qw.bits_per_weight == bits  # 8 * (bytes of one block) / (weights in it), from ggml-common.h
    assert torch.equal(qw.dequantize(), dequantize_blocks(qw.data, qtype, (8, 512)))


@pytest.mark.parametrize("call, error, match", [
    (lambda: quantize_blocks(torch.randn(4, 576), "Q4_K"), ValueError, r"multiples of 256.*576"),
    (lambda: quantize_blocks(torch.randn(4, 48), "Q8_0"), ValueError, r"blocks of 32.*48 % 32 = 16"),
    (lambda: quantize_blocks(torch.tensor([[float("nan")] * 32]), "Q4_0"), ValueError, "NaN or inf"),
    (lambda: quantize_blocks(torch.full((1, 32), 7e4), "Q8_0"), ValueError, "fp16"),
    (lambda: quantize_blocks(torch.randn(2, 32), "Q3_K"), ValueError, r"Q8_0.*Q6_K"),
    (lambda: quantize_blocks(torch.randint(0, 5, (2, 32)), "Q8_0"), TypeError, "floating-point"),
    (lambda: quantize_blocks(torch.randn(2, 256), "Q8_0", torch.ones(256)), ValueError, "Q8_0 has no search"),
    (lambda: quantize_blocks(torch.randn(2, 256), "Q4_K", torch.ones(32)), ValueError, r"shape \(256,\)"),
    (lambda: quantize_blocks(torch.randn(2, 256), "Q4_K", -torch.ones(256)), ValueError, ">= 0"),
    (lambda: quantize_blocks(torch.randn(2, 256), "Q6_K", torch.zeros(256)), ValueError, "all zero"),
    (lambda: dequantize_blocks(torch.zeros(35, dtype=torch.uint8), "Q8_0", (1, 32)), ValueError, "35 bytes.*34"),
    (lambda: dequantize_blocks(torch.zeros(34), "Q8_0", (1, 32)), TypeError, "uint8"),
    (lambda: dequantize_blocks(torch.zeros(144, dtype=torch.uint8), "Q4_K", (1, 576)), ValueError, "256"),
    (lambda: dequantize_blocks(torch.zeros(34, dtype=torch.uint8), "Q8_0", (0, 32)), ValueError, "positive ints"),
    (lambda: importance(torch.randn(3, 4, 5)), ValueError, "2-D"),
    (lambda: quantize_weight(torch.randn(4, 64), torch.randn(9, 32), type="Q8_0"), ValueError, r"\(tokens, 64\)"),
    (lambda: pack_blocks(torch.zeros(1, 256, dtype=torch.long), torch.ones(1, 1), None, "Q4_K"), ValueError, "legacy"),
    (lambda: pack_blocks(torch.zeros(1, 64, dtype=torch.long), torch.ones(1, 1), None, "Q8_0"), ValueError,
     r"d must have shape \(1, 2\)"),
    (lambda: pack_blocks(torch.zeros(1, 32), torch.ones(1, 1), None, "Q8_0"), TypeError, "integer"),
], ids=["k-quant-576", "row-48", "nan", "fp16-overflow", "unknown-type", "int-W", "imatrix-q8", "imatrix-shape",
        "imatrix-negative", "imatrix-zero", "data-length", "data-dtype", "shape-576", "shape-zero", "importance-3d",
        "X-shape", "pack-k-quant", "pack-d-shape", "pack-float-codes"])
def test_bad_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_model_importance_sums_each_layer_inputs_squared():
    from qlearn.inference.capture import capture_inputs

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32))
    batches = [torch.randn(5, 64), torch.randn(3, 64)]
    got = ggml_quants.model_importance(model, batches)
    X = capture_inputs(model, ["0", "2"], batches)
    assert set(got) == {"0", "2"}
    for name in got:
        torch.testing.assert_close(got[name], importance(X[name]))
