"""llama.cpp's k-quants: the 256-weight super-blocks Q4_K and Q6_K, and the scale searches every GGML type shares.

Spec: ggml's `ggml-common.h` (block_q4_K, block_q6_K) and `ggml-quants.c` (quantize_row_q4_K_ref / _impl,
quantize_row_q6_K_ref / _impl, make_qkx2_quants, make_qkx3_quants, make_qx_quants, make_qp_quants). A super-block
keeps sub-block scales (and mins) as small integers on a grid with one fp16 super-scale: double quantization.

    Q4_K  r = (d * sc_j) * q - (dmin * m_j)    8 sub-blocks of 32, sc_j, m_j 6-bit, q 4-bit   144 bytes, 4.5 bits
    Q6_K  r = (d * sc_j) * (q - 32)            16 sub-blocks of 16, sc_j int8, q 6-bit        210 bytes, 6.5625

Objective of the searches, for each sub-block x with weights w (see ggml_quants for where w comes from):

    min over (scale, min):  sum_i w_i * (scale * L_i + min - x_i)^2,  L_i = clamp(round((x_i - min) / scale))

walked over candidate scales, each refit by weighted least squares. The public edge (checks, rows, chunks) is
`qlearn.methods.ggml_quants.quantize_blocks` / `dequantize_blocks`; this file trusts its caller.
Simplified: sums run in torch's order, not C's, so a code can differ from llama.cpp's where a candidate's
error ties to the last float bit.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["QK_K", "decode_k", "encode_k"]

QK_K = 256

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


def encode_k(x: torch.Tensor, qw: torch.Tensor | None, type: str) -> torch.Tensor:
    """Super-blocks of 256 weights as Q4_K or Q6_K bytes (llama.cpp's search; qw: imatrix weights or None).

    Shapes: x (n, 256) float32, qw (n, 256) or None -> (n, 144 or 210) uint8.
    """
    return (_q4_k if type == "Q4_K" else _q6_k)(x, qw)


def decode_k(b: torch.Tensor, type: str) -> torch.Tensor:
    """Q4_K: (d sc_j) q - dmin m_j;  Q6_K: (d sc_j) (q - 32), as gguf-py dequantizes them.

    Shapes: b (n, 144 or 210) uint8 -> (n, 256) float32.
    """
    if type == "Q4_K":
        sc, m = _q4_k_scales(b[:, 4:16])  # (n, 8)
        q = _unnibble(b[:, 16:].reshape(-1, 4, 32)).reshape(-1, 8, 32).float()  # (n, 8, 32)
        d, dm = _f16_value(b[:, :2]) * sc.float(), _f16_value(b[:, 2:4]) * m.float()  # (n, 8)
        return (d[..., None] * q - dm[..., None]).reshape(-1, QK_K)
    low = _unnibble(b[:, :128].reshape(-1, 2, 64))  # (n, 2, 128): quarters 0..3 of each half
    shifts = torch.tensor([0, 2, 4, 6], device=b.device, dtype=torch.int32)[:, None]  # (4, 1)
    high = ((b[:, 128:192].reshape(-1, 2, 1, 32).to(torch.int32) >> shifts) & 3).reshape(-1, 2, 128)
    q = ((low | high << 4) - 32).reshape(-1, 16, 16).float()  # (n, 16, 16)
    d = _f16_value(b[:, 208:]) * b[:, 192:208].contiguous().view(torch.int8).float()  # (n, 16)
    return (d[..., None] * q).reshape(-1, QK_K)
