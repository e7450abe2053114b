"""GGML's block formats (the weights inside a GGUF file), byte for byte, and llama.cpp's k-quant search.

Spec: ggml's `ggml-common.h` block structs and `ggml-quants.c` (quantize_row_*_ref, make_qkx2_quants,
make_qx_quants, make_qp_quants), as gguf-py's `gguf/quants.py` reads them. Every row of W is cut into
blocks along the input axis; each block keeps its codes and fp16 scales in a fixed number of bytes:

    legacy, 32 weights:  Q8_0  r = d * q                 Q4_0 / Q5_0  r = d * (q - 8 / 16)
                         Q4_1 / Q5_1  r = d * q + m
    k-quants, 256:       Q4_K  r = (d * sc_j) * q - (dmin * m_j)    8 sub-blocks of 32, sc_j, m_j 6-bit
                         Q6_K  r = (d * sc_j) * (q - 32)            16 sub-blocks of 16, sc_j int8

The k-quants quantize the sub-block scales themselves onto a 6- or 8-bit grid with one fp16 super-scale
(double quantization). Objective of their search (llama.cpp's), for each sub-block x with weights w:

    min over (scale, min):  sum_i w_i * (scale * L_i + min - x_i)^2,  L_i = clamp(round((x_i - min) / scale))

walked over candidate scales, each refit by weighted least squares. Without an importance matrix
w_i = rms(x) + |x_i| (Q4_K) or x_i^2 (Q6_K); with one (llama.cpp's imatrix, `importance(X)` = the diagonal
of GPTQ's H), w_i = imatrix_i * sqrt(sigma^2 + x_i^2) and the scales are rounded onto their 6-bit grid
by the same weighted search. Legacy types follow the reference rounding exactly (checked against
gguf-py's bytes); with an imatrix Q4_0/Q5_0 and Q4_1/Q5_1 use the same searches, as llama.cpp does.
Simplified: sums run in torch's order, not C's, so a k-quant code can differ from llama.cpp's where a
candidate's error ties to the last float bit; quantize_row_q8_1 and the i-quants are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.validation import check_choice, check_float_tensor, check_inputs, check_weight
from .weight import QuantizedWeight

__all__ = ["BLOCK_BYTES", "FP16_MAX", "GGMLWeight", "TYPES", "dequantize_blocks", "importance", "pack_blocks",
           "quantize_blocks", "quantize_weight"]

QK, QK_K = 32, 256
BLOCK_BYTES = {"Q8_0": (QK, 34), "Q4_0": (QK, 18), "Q4_1": (QK, 20), "Q5_0": (QK, 22), "Q5_1": (QK, 24),
               "Q4_K": (QK_K, 144), "Q6_K": (QK_K, 210)}  # type -> (weights per block, bytes per block)
TYPES = tuple(BLOCK_BYTES)
FP16_MAX = 65504.0  # d and m are fp16: a larger |W| would store inf
_CHUNK = 2 ** 18  # weights quantized at once: the candidate searches hold (blocks, candidates, block) floats


# ---- bytes: fp16 fields, nibbles, the 5th bit ---------------------------------------------------------------

def _f16_bytes(v: torch.Tensor) -> torch.Tensor:
    """fp16 little-endian bytes of float32 values (round to nearest even). Shapes: (n, 1) -> (n, 2) uint8."""
    return v.to(torch.float16).contiguous().view(torch.uint8)


def _f16_value(b: torch.Tensor) -> torch.Tensor:
    """The float32 value of fp16 bytes. Shapes: (n, 2) uint8 -> (n, 1) float32."""
    return b.contiguous().view(torch.float16).float()


def _nibbles(q: torch.Tensor) -> torch.Tensor:
    """First half of the last axis in the low nibbles, second half in the high. (..., 2k) -> (..., k) uint8."""
    k = q.shape[-1] // 2
    return (q[..., :k] | (q[..., k:] << 4)).to(torch.uint8)


def _unnibble(b: torch.Tensor) -> torch.Tensor:
    """Inverse of `_nibbles`. Shapes: (..., k) uint8 -> (..., 2k) int32 in 0..15."""
    b = b.to(torch.int32)
    return torch.cat([b & 15, b >> 4], dim=-1)


def _bit_field(h: torch.Tensor) -> torch.Tensor:
    """32 bits (0/1) as one little-endian uint32, bit j = h[j]. Shapes: (n, 32) -> (n, 4) uint8."""
    weights = 1 << torch.arange(8, device=h.device, dtype=torch.int32)  # (8,)
    return (h.reshape(-1, 4, 8) * weights).sum(-1).to(torch.uint8)  # (n, 4)


def _unbit_field(b: torch.Tensor) -> torch.Tensor:
    """Inverse of `_bit_field`. Shapes: (n, 4) uint8 -> (n, 32) int32 in {0, 1}."""
    shifts = torch.arange(8, device=b.device, dtype=torch.int32)  # (8,)
    return ((b.to(torch.int32)[..., None] >> shifts) & 1).reshape(-1, 32)  # (n, 32)


# ---- legacy blocks of 32 ------------------------------------------------------------------------------------

def _inverse(d: torch.Tensor) -> torch.Tensor:
    """1 / d, and 0 where d is 0 (or so small that 1 / d overflows: fp16 stores such a d as 0 anyway)."""
    inv = 1 / d
    return torch.where(torch.isfinite(inv), inv, torch.zeros_like(inv))


def _legacy_encode(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, bits: int) -> torch.Tensor:
    """Lay out one legacy block (all multi-byte fields little-endian, j = 0..15):

        Q4_0  | d fp16 (2) | qs (16): byte j = q[j] | q[j+16] << 4 |                           18 bytes
        Q4_1  | d fp16 (2) | m fp16 (2) | qs (16) |                                            20 bytes
        Q5_0  | d fp16 (2) | qh (4): bit j = q[j] >> 4 | qs (16): low nibbles as Q4_0 |        22 bytes
        Q5_1  | d fp16 (2) | m fp16 (2) | qh (4) | qs (16) |                                   24 bytes

    Shapes: q (n, 32) int codes in 0..2^bits-1; d, m (n, 1) float32 -> (n, type bytes) uint8.
    """
    parts = [_f16_bytes(d)] + ([] if m is None else [_f16_bytes(m)])
    if bits == 5:
        parts.append(_bit_field(q >> 4))
    return torch.cat(parts + [_nibbles(q & 15)], dim=1)


def _legacy_reference(x: torch.Tensor, bits: int, symmetric: bool):
    """ggml's quantize_row_q{4,5}_{0,1}_ref: the scale from the block's extremes, codes by truncation.

    symmetric:  d = max / -2^(b-1)  (max: the value of largest |x|),  q = trunc(x / d + 2^(b-1) + 0.5)
    asymmetric: d = (max - min) / (2^b - 1),  m = min,               q = trunc((x - m) / d + 0.5)
    All in float32 with 1/d as the multiplier, as the C code (and gguf-py) computes it.
    Shapes: x (n, 32) float32 -> q (n, 32) int32, d (n, 1), m (n, 1) or None.
    """
    levels = 2 ** bits
    if symmetric:
        d = x.gather(1, x.abs().argmax(1, keepdim=True)) / -(levels // 2)  # (n, 1); first of tied extremes
        m, shifted, offset = None, x, levels // 2 + 0.5
    else:
        m = x.amin(1, keepdim=True)  # (n, 1)
        d = (x.amax(1, keepdim=True) - m) / (levels - 1)
        shifted, offset = x - m, 0.5
    q = (shifted * _inverse(d) + offset).trunc().clamp(0, levels - 1).to(torch.int32)
    return q, d, m


def _q8_0(x: torch.Tensor) -> torch.Tensor:
    """Q8_0 block: | d fp16 (2) | qs int8 (32) | = 34 bytes; d = max|x| / 127, q = roundf(x / d) (ties away).

    Shapes: x (n, 32) float32 -> (n, 34) uint8.
    """
    d = x.abs().amax(1, keepdim=True) / 127  # (n, 1)
    v = x * _inverse(d)
    a = v.abs()
    q = torch.sign(v) * (a.floor() + (2 * (a - a.floor())).floor())  # round half away from zero, exactly
    return torch.cat([_f16_bytes(d), q.clamp(-127, 127).to(torch.int8).view(torch.uint8)], dim=1)


# ---- the searches (vectorised over blocks) ------------------------------------------------------------------

def _search_scale_min(x, w, nmax: int, rmin: float, rdelta: float, nstep: int):
    """make_qkx2 / make_qkx3_quants: the best (scale, min <= 0) for codes L in 0..nmax, weighted by w.

    Start from the range (scale = (max - min) / nmax); then for s = 0..nstep try
    iscale = (nmax + rmin + rdelta * s) / (max - min), L = clamp(round(iscale (x - min))), refit scale and
    min by weighted least squares, and keep the fit if its weighted error is smaller. As in the C loop, a
    kept fit moves `min`, and later candidates round around the new one (a greedy walk, not a grid).
    Shapes: x, w (n, k) float32 -> scale (n,), the_min = -min (n,) >= 0, L (n, k) int32.
    """
    lo, hi = x.amin(1, keepdim=True).clamp(max=0), x.amax(1, keepdim=True)  # (n, 1)
    flat = (hi <= lo)[:, 0]
    sum_w, sum_x = w.sum(1, keepdim=True), (w * x).sum(1, keepdim=True)  # (n, 1)

    def codes(iscale, lo):
        v = iscale * (x - lo)  # (n, k); NaN or inf when a fitted min reached max: code 0, as make_qkx3
        return torch.where(v > 0, torch.round(v.clamp(max=nmax)), torch.zeros_like(v))

    span = torch.where(flat[:, None], 1.0, hi - lo)
    iscale = nmax / span
    scale, L = 1 / iscale, codes(iscale, lo)
    best = (w * (scale * L + lo - x) ** 2).sum(1, keepdim=True)  # (n, 1)
    for s in range(nstep + 1):
        step = float(np.float32(np.float32(rmin) + np.float32(rdelta) * np.float32(s)) + np.float32(nmax))
        La = codes(step / (hi - lo), lo)  # (n, k)
        sum_l, sum_l2, sum_xl = [(w * t).sum(1, keepdim=True) for t in (La, La * La, La * x)]  # (n, 1) each
        D = sum_w * sum_l2 - sum_l * sum_l
        safe_D = torch.where(D > 0, D, 1.0)
        this_scale, this_min = (sum_w * sum_xl - sum_x * sum_l) / safe_D, (sum_l2 * sum_x - sum_l * sum_xl) / safe_D
        clip = this_min > 0
        this_scale = torch.where(clip, sum_xl / torch.where(sum_l2 > 0, sum_l2, 1.0), this_scale)
        this_min = torch.where(clip, 0.0, this_min)
        err = (w * (this_scale * La + this_min - x) ** 2).sum(1, keepdim=True)
        take = (D > 0) & (err < best)  # (n, 1)
        L, best = torch.where(take, La, L), torch.where(take, err, best)
        scale, lo = torch.where(take, this_scale, scale), torch.where(take, this_min, lo)
    scale = torch.where(flat, 0.0, scale[:, 0])
    return scale, -lo[:, 0], torch.where(flat[:, None], 0, L.to(torch.int32))


def _search_scale(x, w, nmax: int):
    """make_qx_quants (rmse_type 1): the best signed scale for codes L in -nmax..nmax-1, weighted by w.

    iscale = -(nmax + 0.1 s) / max (max: the value of largest |x|), s = 0, -9..-1, 1..9;
    L = clamp(round(iscale x)); scale = sum(w x L) / sum(w L^2); keep the first s with the largest
    sum(w x L)^2 / sum(w L^2) (least-squares error is sum(w x^2) minus this).
    Shapes: x, w (n, k) float32 -> scale (n,), L + nmax (n, k) int32 in 0..2 nmax - 1.
    """
    top = x.gather(1, x.abs().argmax(1, keepdim=True))  # (n, 1) signed extreme
    zero = top.abs()[:, 0] < 1e-15
    top = torch.where(top == 0, torch.ones_like(top), top)
    s = torch.tensor([0] + list(range(-9, 0)) + list(range(1, 10)), device=x.device, dtype=torch.float32)  # (19,)
    iscale = -(nmax + 0.1 * s) / top  # (n, 19)
    L = torch.round(iscale[..., None] * x[:, None, :]).clamp(-nmax, nmax - 1)  # (n, 19, k)
    ws = w[:, None, :]
    sum_lx, sum_l2 = (ws * x[:, None, :] * L).sum(-1), (ws * L * L).sum(-1)  # (n, 19)
    gain = torch.where(sum_l2 > 0, sum_lx * sum_lx / torch.where(sum_l2 > 0, sum_l2, 1.0), -1.0)
    gain[:, 0] = gain[:, 0].clamp(min=0)
    best = gain.argmax(1, keepdim=True)  # (n, 1) first largest
    scale = (sum_lx.gather(1, best) / sum_l2.gather(1, best).clamp(min=1e-30))[:, 0]
    L = L.gather(1, best[..., None].expand(-1, 1, x.shape[1]))[:, 0] + nmax  # (n, k)
    return torch.where(zero, 0.0, scale), torch.where(zero[:, None], 0, L.to(torch.int32))


def _search_scale_grid(v: torch.Tensor, w: torch.Tensor, nmax: int):
    """make_qp_quants: put non-negative sub-block scales v on the grid d * l, l in 0..nmax, weighted by w.

    d from the best of 9 candidates (nmax + 0.1 s) / max v, s = -4..4, then 5 sweeps that move one l at a
    time to round(v_i * sum(w l^2) / sum(w v l)) when that raises sum(w v l)^2 / sum(w l^2).
    Shapes: v, w (n, k) float32 -> d (n,), l (n, k) int32.
    """
    top = v.amax(1, keepdim=True)  # (n, 1)
    zero = top[:, 0] < 1e-15
    top = torch.where(zero[:, None], torch.ones_like(top), top)
    s = torch.tensor([0, -4, -3, -2, -1, 1, 2, 3, 4], device=v.device, dtype=torch.float32)
    iscale = (nmax + 0.1 * s) / top  # (n, 9)
    L = torch.round(iscale[..., None] * v[:, None, :])  # (n, 9, k)
    L[:, 1:] = L[:, 1:].clamp(max=nmax)
    mse = (w[:, None, :] * (v[:, None, :] - (1 / iscale[..., None]) * L) ** 2).sum(-1)  # (n, 9)
    best = iscale.gather(1, mse.argmin(1, keepdim=True))  # (n, 1)
    L = torch.round(best * v).clamp(0, nmax)  # (n, k)
    sum_lx, sum_l2 = (w * v * L).sum(1), (w * L * L).sum(1)  # (n,)
    for _ in range(5):
        for i in range(v.shape[1]):
            wi, vi, li = w[:, i], v[:, i], L[:, i]
            slx, sl2 = sum_lx - wi * vi * li, sum_l2 - wi * li * li
            ok = (slx > 0) & (sl2 > 0)
            new = torch.round(vi * sl2 / torch.where(ok, slx, 1.0)).clamp(0, nmax)
            slx, sl2 = slx + wi * vi * new, sl2 + wi * new * new
            take = ok & (new != li) & (slx * slx * sum_l2 > sum_lx * sum_lx * sl2)
            L[:, i] = torch.where(take, new, li)
            sum_lx, sum_l2 = torch.where(take, slx, sum_lx), torch.where(take, sl2, sum_l2)
    d = torch.where(sum_l2 > 0, sum_lx / torch.where(sum_l2 > 0, sum_l2, 1.0), 0.0)
    return torch.where(zero, 0.0, d), torch.where(zero[:, None], 0, L.to(torch.int32))


def _legacy_weighted(x, qw, sigma2, bits: int, symmetric: bool):
    """quantize_row_q{4,5}_{0,1}_impl: with an imatrix the legacy types search as the k-quants do.

    w = imatrix * sqrt(sigma^2 + x^2) (sigma^2: the row's mean x^2); symmetric types: make_qx_quants,
    asymmetric: make_qkx3_quants (candidates -0.9 + 0.05 s, s = 0..36) with m = the fitted min.
    Shapes: x, qw (n, 32), sigma2 (n, 1) -> q (n, 32) int32, d (n, 1), m (n, 1) or None.
    """
    w = qw * torch.sqrt(sigma2 + x * x)
    if symmetric:
        d, q = _search_scale(x, w, 2 ** (bits - 1))
        return q, d[:, None], None
    d, the_min, q = _search_scale_min(x, w, 2 ** bits - 1, -0.9, 0.05, 36)
    return q, d[:, None], -the_min[:, None]


# ---- k-quant super-blocks of 256 ----------------------------------------------------------------------------

def _requantize(xs, L, dd, dm):
    """The codes again from the stored (fp16) scales: L = round((x + dm) / dd), kept where dd == 0.

    Shapes: xs (n, j, k); L (n, j, k) int32; dd, dm (n, j) float32 -> (n, j, k) int32 (clamped by the caller).
    """
    nonzero = (dd != 0)[..., None]
    q = torch.round((xs + dm[..., None]) / torch.where(nonzero, dd[..., None], 1.0))
    return torch.where(nonzero, q, L.to(q.dtype)).to(torch.int32)


def _q4_k(x: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    """Q4_K super-block (8 sub-blocks j of 32, r = (d * sc_j) * q - dmin * m_j, q in 0..15):

        | d fp16 (2) | dmin fp16 (2) | scales (12) | qs (128) |                               144 bytes
        scales, sc_j and m_j 6-bit (j = 0..3 whole; 4..7 split into a low nibble and 2 high bits):
            byte 0..3   : sc_{j} (bits 0-5)   | sc_{j+4} >> 4 (bits 6-7)
            byte 4..7   : m_{j}  (bits 0-5)   | m_{j+4}  >> 4 (bits 6-7)
            byte 8..11  : sc_{j+4} & 15 (bits 0-3) | (m_{j+4} & 15) << 4
        qs, 4 chunks c of 64 weights: byte 32 c + l = q[64 c + l] | q[64 c + 32 + l] << 4

    Search: without an imatrix quantize_row_q4_K_ref (weights rms(x_sub) + |x|, 21 candidates, sc and m
    rounded onto max / 63); with one quantize_row_q4_K_impl (37 candidates, sc and m searched onto their grid).
    Shapes: x (n, 256) float32, qw (n, 256) or None -> (n, 144) uint8.
    """
    xs = x.reshape(-1, 8, 32)  # (n, 8, 32)
    if qw is None:
        w = xs.pow(2).mean(-1, keepdim=True).sqrt() + xs.abs()
        sc, mn, L = _search_scale_min(xs.reshape(-1, 32), w.reshape(-1, 32), 15, -1.0, 0.1, 20)
        sc, mn = sc.reshape(-1, 8).clamp(min=0), mn.reshape(-1, 8)  # (n, 8)
        top_sc, top_mn = sc.amax(1, keepdim=True), mn.amax(1, keepdim=True)  # (n, 1)
        ls = torch.round(torch.where(top_sc > 0, 63 / top_sc, 0.0) * sc).clamp(0, 63)
        lm = torch.round(torch.where(top_mn > 0, 63 / top_mn, 0.0) * mn).clamp(0, 63)
        d, dmin = top_sc / 63, top_mn / 63
    else:
        sigma2 = 2 * x.pow(2).sum(1)[:, None, None] / QK_K  # (n, 1, 1)
        w = qw.reshape(-1, 8, 32) * torch.sqrt(sigma2 + xs * xs)  # (n, 8, 32)
        sc, mn, L = _search_scale_min(xs.reshape(-1, 32), w.reshape(-1, 32), 15, -0.9, 0.05, 36)
        d, ls = _search_scale_grid(sc.reshape(-1, 8).clamp(min=0), w.sum(-1), 63)
        dmin, lm = _search_scale_grid(mn.reshape(-1, 8), w.sum(-1), 63)
        d, dmin, ls, lm = d[:, None], dmin[:, None], ls.float(), lm.float()
    d16, dmin16 = _f16_value(_f16_bytes(d)), _f16_value(_f16_bytes(dmin))  # (n, 1) as stored
    q = _requantize(xs, L.reshape(-1, 8, 32), d16 * ls, dmin16 * lm).clamp(0, 15)  # (n, 8, 32)
    ls, lm = ls.to(torch.int32), lm.to(torch.int32)
    scales = torch.cat([ls[:, :4] | (ls[:, 4:] >> 4) << 6, lm[:, :4] | (lm[:, 4:] >> 4) << 6,
                        (ls[:, 4:] & 15) | (lm[:, 4:] & 15) << 4], dim=1).to(torch.uint8)  # (n, 12)
    qs = _nibbles(q.reshape(-1, 4, 64)).reshape(-1, 128)  # (n, 128)
    return torch.cat([_f16_bytes(d), _f16_bytes(dmin), scales, qs], dim=1)


def _q4_k_scales(b: torch.Tensor):
    """Unpack the 12 scale bytes of Q4_K. Shapes: (n, 12) uint8 -> sc, m (n, 8) int32 in 0..63."""
    b = b.to(torch.int32)
    lo, mid, hi = b[:, :4], b[:, 4:8], b[:, 8:]  # (n, 4) each
    sc = torch.cat([lo & 63, (hi & 15) | (lo >> 6) << 4], dim=1)
    m = torch.cat([mid & 63, (hi >> 4) | (mid >> 6) << 4], dim=1)
    return sc, m


def _q6_k(x: torch.Tensor, qw: torch.Tensor | None) -> torch.Tensor:
    """Q6_K super-block (16 sub-blocks j of 16, r = (d * sc_j) * (q - 32), q in 0..63, sc_j int8):

        | ql (128) | qh (64) | scales int8 (16) | d fp16 (2) |                                 210 bytes
        two halves h of 128 weights, quarters r = 0..3 of 32, l = 0..31, q = q[128 h + 32 r + l]:
            ql byte 64 h + l      = q(r=0) & 15 | (q(r=2) & 15) << 4
            ql byte 64 h + 32 + l = q(r=1) & 15 | (q(r=3) & 15) << 4
            qh byte 32 h + l      = q(r=0) >> 4 | q(r=1) >> 4 << 2 | q(r=2) >> 4 << 4 | q(r=3) >> 4 << 6

    Search: make_qx_quants per sub-block (weights x^2, or the imatrix itself), then the 16 signed scales
    on the int8 grid d * sc with d = -max / 128 (max: the scale of largest |.|), as quantize_row_q6_K.
    Shapes: x (n, 256) float32, qw (n, 256) or None -> (n, 210) uint8.
    """
    xs = x.reshape(-1, 16)  # (n * 16, 16)
    sc, L = _search_scale(xs, xs * xs if qw is None else qw.reshape(-1, 16), 32)
    sc = sc.reshape(-1, 16)  # (n, 16)
    top = sc.gather(1, sc.abs().argmax(1, keepdim=True))  # (n, 1)
    zero = top.abs() < 1e-15
    iscale = -128 / torch.where(zero, 1.0, top)
    d = torch.where(zero, 0.0, 1 / iscale)
    q_sc = torch.round(iscale * sc).clamp(-128, 127)  # (n, 16)
    dd = _f16_value(_f16_bytes(d)) * q_sc
    q = _requantize(xs.reshape(-1, 16, 16), L.reshape(-1, 16, 16) - 32, dd, torch.zeros_like(dd))
    q = (q.clamp(-32, 31) + 32).reshape(-1, 2, 4, 32)  # (n, half, quarter, 32)
    ql = _nibbles((q & 15).reshape(-1, 2, 128)).reshape(-1, 128)  # (n, 128)
    shifts = torch.tensor([0, 2, 4, 6], device=x.device, dtype=torch.int32)[:, None]  # (4, 1)
    qh = ((q >> 4) << shifts).sum(2).to(torch.uint8).reshape(-1, 64)  # (n, 64)
    out = torch.cat([ql, qh, q_sc.to(torch.int8).view(torch.uint8), _f16_bytes(d)], dim=1)
    return torch.where(zero, torch.zeros_like(out), out)  # an all-zero super-block is all zero bytes


# ---- public edge --------------------------------------------------------------------------------------------

def _check_type(type) -> tuple[int, int]:
    check_choice(type, "type", TYPES)
    return BLOCK_BYTES[type]


def _check_rows(n: int, type: str, block: int) -> None:
    if n % block:
        hint = (" k-quants need rows that are multiples of 256 (SmolLM2's 576-wide rows cannot hold them: "
                "llama.cpp falls back to a legacy type such as Q5_0 or Q8_0 there)") if block == QK_K else ""
        raise ValueError(f"{type} stores blocks of {block} weights along each row, but a row has {n} "
                         f"({n} % {block} = {n % block}).{hint}")


def importance(X: torch.Tensor) -> torch.Tensor:
    """llama.cpp's importance matrix of a linear layer's inputs: the per-column sum of squares.

    imatrix_i = sum_t X[t, i]^2   (the diagonal of GPTQ's H = X^T X; llama.cpp keeps the mean over tokens,
    which rescales every weight of a block alike and so picks the same codes)
    Shapes: X (tokens, in) -> (in,) float32.
    """
    check_float_tensor(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (tokens, in_features), got shape {tuple(X.shape)}; "
                         "flatten batch and sequence dims with X.reshape(-1, X.shape[-1])")
    imatrix = X.detach().float().pow(2).sum(0)  # (in,)
    if not bool(torch.isfinite(imatrix).all()):
        raise ValueError("the sum of x^2 overflows float32: the inputs are too large for an importance matrix")
    return imatrix


def _check_imatrix(imatrix, type: str, n: int) -> torch.Tensor | None:
    if imatrix is None:
        return None
    if type == "Q8_0":
        raise ValueError("Q8_0 has no search for an importance matrix to weight (llama.cpp ignores it): "
                         f"pass imatrix=None, or one of {TYPES[1:]}")
    check_float_tensor(imatrix, "imatrix")
    if imatrix.shape != (n,):
        raise ValueError(f"imatrix must have shape ({n},), one value per input column, got {tuple(imatrix.shape)}")
    if bool((imatrix < 0).any()):
        raise ValueError("imatrix must be >= 0 (a sum of squared inputs), got negative values")
    if not bool((imatrix > 0).any()):
        raise ValueError("imatrix is all zero: every weight would count for nothing (and a block's scale could "
                         "come out 0); pass imatrix=None, or the importance of real inputs")
    return imatrix.detach().float()


def quantize_blocks(W: torch.Tensor, type: str, imatrix: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize each row of W into GGML blocks of `type`, as llama.cpp writes them into a GGUF file.

    Legacy types: the reference rounding (bytes equal gguf.quants.quantize); k-quants: llama.cpp's search
    (see the block docstrings). imatrix (in,), e.g. `importance(X)`, weights the searches of every type but Q8_0.
    Shapes: W (..., n) float, n a multiple of 32 (256 for Q4_K, Q6_K) -> (..., n / block * bytes) uint8.
    """
    block, nbytes = _check_type(type)
    check_float_tensor(W, "W")
    if W.ndim == 0:
        raise ValueError("W must have at least one dimension (rows along the last), got a 0-d tensor")
    n = W.shape[-1]
    _check_rows(n, type, block)
    qw = _check_imatrix(imatrix, type, n)
    if float(W.abs().max()) > FP16_MAX:
        raise ValueError(f"|W| must be <= {FP16_MAX:g}: GGML keeps each block's scale and min in fp16, which would "
                         f"overflow to inf; got max |W| = {float(W.abs().max()):g}")
    rows = W.detach().float().reshape(-1, n)  # (R, n)
    x = rows.reshape(-1, block)  # (R * n / block, block)
    if qw is not None:
        sigma2 = rows.pow(2).mean(1, keepdim=True).expand(-1, n // block).reshape(-1, 1)  # (blocks, 1)
        qw = qw.expand(rows.shape[0], n).reshape(-1, block)  # (blocks, block)
    out = []
    for start in range(0, x.shape[0], _CHUNK // block):  # bounded memory for the candidate searches
        part = slice(start, start + _CHUNK // block)
        xb, wb = x[part], None if qw is None else qw[part]
        if type == "Q8_0":
            out.append(_q8_0(xb))
        elif type in ("Q4_K", "Q6_K"):
            out.append((_q4_k if type == "Q4_K" else _q6_k)(xb, wb))
        else:
            bits, symmetric = int(type[1]), type.endswith("_0")
            q, d, m = _legacy_reference(xb, bits, symmetric) if wb is None else \
                _legacy_weighted(xb, wb, sigma2[part], bits, symmetric)
            out.append(_legacy_encode(q, d, m, bits))
    return torch.cat(out).reshape(*W.shape[:-1], n // block * nbytes)


def pack_blocks(q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, type: str) -> torch.Tensor:
    """Lay out given codes and block scales as a legacy type's bytes, with no rounding choice of its own.

    Q8_0: r = d q, q in -128..127;  Q4_0 / Q5_0: r = d (q - 8 / 16), q in 0..15 / 0..31;
    Q4_1 / Q5_1: r = d q + m, q in 0..15 / 0..31. d and m are stored in fp16 (rounded to nearest even).
    For a grid found elsewhere (GPTQ's codes and scales): the exporter writes it without re-rounding.
    Shapes: q (..., n) integer, d and m (..., n / 32) float -> (..., n / 32 * bytes) uint8.
    """
    block, nbytes = _check_type(type)
    if block != QK:
        raise ValueError(f"pack_blocks lays out the legacy types {TYPES[:5]}, got {type!r} (k-quants search their "
                         "own sub-block scales: use quantize_blocks)")
    if not isinstance(q, torch.Tensor) or q.is_floating_point() or q.ndim == 0:
        got = q.dtype if isinstance(q, torch.Tensor) else q.__class__.__name__
        raise TypeError(f"q must be an integer tensor of codes (..., n), got {got}")
    _check_rows(q.shape[-1], type, block)
    lo, hi = (-128, 127) if type == "Q8_0" else (0, 2 ** int(type[1]) - 1)
    if q.numel() and (int(q.min()) < lo or int(q.max()) > hi):
        raise ValueError(f"{type} codes must be in {lo}..{hi}, got {int(q.min())}..{int(q.max())}")
    need_m = type.endswith("_1")
    stats = (("d", d),) + ((("m", m),) if need_m else ())
    if not need_m and m is not None:
        raise ValueError(f"{type} stores no min m (it is symmetric): pass m=None")
    for name, t in stats:
        check_float_tensor(t, name)
        if t.shape != (*q.shape[:-1], q.shape[-1] // block):
            raise ValueError(f"{name} must have shape {(*q.shape[:-1], q.shape[-1] // block)}, one per block of 32, "
                             f"got {tuple(t.shape)}")
    codes = q.reshape(-1, block).to(torch.int32)  # (blocks, 32)
    d_b = d.reshape(-1, 1).float()  # (blocks, 1)
    if type == "Q8_0":
        out = torch.cat([_f16_bytes(d_b), codes.to(torch.int8).view(torch.uint8)], dim=1)
    else:
        out = _legacy_encode(codes, d_b, m.reshape(-1, 1).float() if need_m else None, int(type[1]))
    return out.reshape(*q.shape[:-1], q.shape[-1] // block * nbytes)


def _decode(b: torch.Tensor, type: str) -> torch.Tensor:
    """Block bytes -> float32 values, in the order of gguf-py's dequantize. Shapes: (n, bytes) -> (n, block)."""
    if type == "Q8_0":
        return _f16_value(b[:, :2]) * b[:, 2:].contiguous().view(torch.int8).float()
    if type == "Q4_K":
        sc, m = _q4_k_scales(b[:, 4:16])  # (n, 8)
        q = _unnibble(b[:, 16:].reshape(-1, 4, 32)).reshape(-1, 8, 32).float()  # (n, 8, 32)
        d, dm = _f16_value(b[:, :2]) * sc.float(), _f16_value(b[:, 2:4]) * m.float()  # (n, 8)
        return (d[..., None] * q - dm[..., None]).reshape(-1, QK_K)
    if type == "Q6_K":
        low = _unnibble(b[:, :128].reshape(-1, 2, 64))  # (n, 2, 128): quarters 0..3 of each half
        shifts = torch.tensor([0, 2, 4, 6], device=b.device, dtype=torch.int32)[:, None]  # (4, 1)
        high = ((b[:, 128:192].reshape(-1, 2, 1, 32).to(torch.int32) >> shifts) & 3).reshape(-1, 2, 128)
        q = ((low | high << 4) - 32).reshape(-1, 16, 16).float()  # (n, 16, 16)
        d = _f16_value(b[:, 208:]) * b[:, 192:208].contiguous().view(torch.int8).float()  # (n, 16)
        return (d[..., None] * q).reshape(-1, QK_K)
    bits, symmetric = int(type[1]), type.endswith("_0")
    d, at = _f16_value(b[:, :2]), 2
    m = None if symmetric else _f16_value(b[:, 2:4])
    at += 0 if symmetric else 2
    q = _unnibble(b[:, at + 4 * (bits == 5):])  # (n, 32)
    if bits == 5:
        q = q | _unbit_field(b[:, at:at + 4]) << 4
    return d * (q - 2 ** (bits - 1)).float() if symmetric else d * q.float() + m


def dequantize_blocks(data: torch.Tensor, type: str, shape) -> torch.Tensor:
    """Decode GGML blocks of `type` back to float32 weights of `shape` (what llama.cpp multiplies with).

    Q8_0: d q;  Q4_0 / Q5_0: d (q - 8 / 16);  Q4_1 / Q5_1: d q + m;
    Q4_K: (d sc_j) q - dmin m_j;  Q6_K: (d sc_j) (q - 32)   (layouts: see _legacy_encode, _q4_k, _q6_k)
    Shapes: data (...) uint8 holding prod(shape) / block blocks -> shape float32.
    """
    block, nbytes = _check_type(type)
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        raise TypeError(f"data must be a uint8 torch.Tensor of block bytes, got "
                        f"{data.dtype if isinstance(data, torch.Tensor) else type(data).__name__}")
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints (rows along the last), got {shape!r}")
    _check_rows(shape[-1], type, block)
    blocks = torch.Size(shape).numel() // block
    if data.numel() != blocks * nbytes:
        raise ValueError(f"data holds {data.numel()} bytes, but {type} weights of shape {shape} take {blocks} blocks "
                         f"of {nbytes} bytes = {blocks * nbytes} bytes")
    return _decode(data.reshape(-1, nbytes), type).reshape(shape)


@dataclass(frozen=True, eq=False)
class GGMLWeight(QuantizedWeight):
    """A weight as a GGUF file stores it: the raw block bytes of one GGML type.

    Shapes: data (out, in / block * bytes) uint8; bits_per_weight is 8 * bytes / block
    (Q8_0 8.5, Q4_0 4.5, Q4_1 5.0, Q5_0 5.5, Q5_1 6.0, Q4_K 4.5, Q6_K 6.5625).
    """

    data: torch.Tensor
    type: str

    def stored(self) -> dict[str, torch.Tensor]:
        return {"data": self.data}

    def dequantize(self) -> torch.Tensor:
        return dequantize_blocks(self.data, self.type, tuple(self.shape)).to(self.dtype)


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, type: str = "Q8_0") -> GGMLWeight:
    """W in GGML blocks of `type`; with calibration inputs X the search is weighted by importance(X).

    Shapes: W (out, in); X (tokens, in) or None (Q8_0 ignores it) -> GGMLWeight of W (out, in).
    """
    check_weight(W)
    _check_type(type)
    X = check_inputs(X, W, required=False, method="ggml")
    imatrix = None if X is None or type == "Q8_0" else importance(X)
    return GGMLWeight(shape=W.shape, dtype=W.dtype, data=quantize_blocks(W, type, imatrix), type=type)
