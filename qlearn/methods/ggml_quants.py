"""GGML's block formats (the weights inside a GGUF file), byte for byte: the legacy blocks and the public edge.

Spec: ggml's `ggml-common.h` block structs and `ggml-quants.c` (quantize_row_*_ref, make_qkx2_quants,
make_qx_quants, make_qp_quants), as gguf-py's `gguf/quants.py` reads them. Every row of W is cut into
blocks along the input axis; each block keeps its codes and fp16 scales in a fixed number of bytes:

    legacy, 32 weights:  Q8_0  r = d * q                 Q4_0 / Q5_0  r = d * (q - 8 / 16)
                         Q4_1 / Q5_1  r = d * q + m
    k-quants, 256:       Q4_K  r = (d * sc_j) * q - (dmin * m_j)    8 sub-blocks of 32, sc_j, m_j 6-bit
                         Q6_K  r = (d * sc_j) * (q - 32)            16 sub-blocks of 16, sc_j int8

The k-quants (their super-blocks, double-quantized sub-block scales, and llama.cpp's weighted scale searches)
live in `ggml_kquants`; this file holds the legacy blocks, the public edge, and the importance matrix.
Without an importance matrix the searches weight w_i = rms(x) + |x_i| (Q4_K) or x_i^2 (Q6_K); with one
(llama.cpp's imatrix, `importance(X)` = the diagonal of GPTQ's H), w_i = imatrix_i * sqrt(sigma^2 + x_i^2).
Legacy types follow the reference rounding exactly (checked against
gguf-py's bytes); with an imatrix Q4_0/Q5_0 and Q4_1/Q5_1 use the same searches, as llama.cpp does.
Simplified: sums run in torch's order, not C's, so a k-quant code can differ from llama.cpp's where a
candidate's error ties to the last float bit; quantize_row_q8_1 and the i-quants are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.validation import check_choice, check_float_tensor, check_inputs, check_module, check_names, check_weight
from ..inference.capture import check_batches, run_batch
from .ggml_kquants import (
    QK_K,
    _bit_field,
    _f16_bytes,
    _f16_value,
    _nibbles,
    _search_scale,
    _search_scale_min,
    _unbit_field,
    _unnibble,
    decode_k,
    encode_k,
)
from .weight import QuantizedWeight

__all__ = ["BLOCK_BYTES", "FP16_MAX", "GGMLWeight", "TYPES", "dequantize_blocks", "importance", "model_importance",
           "pack_blocks", "quantize_blocks", "quantize_weight"]

QK = 32
BLOCK_BYTES = {"Q8_0": (QK, 34), "Q4_0": (QK, 18), "Q4_1": (QK, 20), "Q5_0": (QK, 22), "Q5_1": (QK, 24),
               "Q4_K": (QK_K, 144), "Q6_K": (QK_K, 210)}  # type -> (weights per block, bytes per block)
TYPES = tuple(BLOCK_BYTES)
FP16_MAX = 65504.0  # d and m are fp16: a larger |W| would store inf
_CHUNK = 2 ** 18  # weights quantized at once: the candidate searches hold (blocks, candidates, block) floats

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


@torch.no_grad()
def model_importance(model: nn.Module, batches, names=None) -> dict[str, torch.Tensor]:
    """importance(X) of every nn.Linear (or of `names`), summed over calibration batches: llama-imatrix's file.

    imatrix[name]_i = sum over every token t of every batch of X_name[t, i]^2   (one forward pass per batch;
    forward hooks add each layer's squared inputs, so no activation is kept)
    Shapes: batches: token ids (1, seq) or dicts of model inputs -> {name: (in,) float32}.
    """
    if isinstance(check_module(model), nn.Linear):
        raise TypeError("model must be a model whose Linear layers get an importance each, not a single nn.Linear "
                        "(for one layer use importance(X))")
    batches = check_batches(batches, model=model)
    linears = {n: m for n, m in model.named_modules() if type(m) is nn.Linear}
    if names is not None:
        unknown = [n for n in check_names(names, model) if n not in linears]
        if unknown:
            raise ValueError(f"names must be nn.Linear layers of the model; not one: {unknown[:3]}")
        linears = {n: linears[n] for n in names}
    sums = {n: torch.zeros(m.in_features) for n, m in linears.items()}

    def hook(module, args, output, name):
        x = args[0].detach().float()
        sums[name] += x.reshape(-1, x.shape[-1]).pow(2).sum(0).cpu()  # (in,)

    handles = [m.register_forward_hook(lambda mod, a, o, n=n: hook(mod, a, o, n)) for n, m in linears.items()]
    try:
        for batch in batches:
            run_batch(model, batch)
    finally:
        for h in handles:
            h.remove()
    if not all(bool(torch.isfinite(v).all()) for v in sums.values()):
        raise ValueError("the sum of x^2 overflows float32 in some layer: the inputs are too large")
    return sums


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
            out.append(encode_k(xb, wb, type))
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
    if type in ("Q4_K", "Q6_K"):
        return decode_k(b, type)
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
