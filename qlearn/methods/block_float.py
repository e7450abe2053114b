"""Block floats with any element, block size and scale format: the design space MX and NVFP4 are two points of.

One scale per block of `block_size` consecutive weights along the input axis, and a tiny float per weight:

    scale "e8m0":    X = 2^(floor(log2(amax)) - emax_elem)          (OCP MX: a power of two, 8 bits per block)
    scale "e4m3":    X = t * e4m3(amax / max_elem / t),  t = amax(W) / (448 * max_elem)     (NVFP4's two-level
                     scale: 8 bits per block plus one float32 per tensor)
    scale "float32": X = amax / max_elem                            (exact: 32 bits per block)
    W_hat = X * elem(W / X)        elem(): the nearest element value, ties to even, saturating at max_elem

    bits per weight = element bits + scale bits / block_size (+ 32 / numel for "e4m3")

With (E2M1, 32, "e8m0") this is mx's "mxfp4", (E2M1, 16, "e4m3") its "nvfp4" and (E4M3, 32, "e8m0") its
"mxfp8_e4m3", bit for bit (tested); the other combinations are what a format designer could pick. Simulated only:
W_hat is returned, nothing is packed.
"""

from __future__ import annotations

import torch

from ..core.validation import check_choice, check_positive_int, check_weight
from . import mx
from .fp8 import E4M3, decode, encode

__all__ = ["ELEMENTS", "SCALES", "bits_per_weight", "quantize_dequantize"]

ELEMENTS = {"e2m1": mx.E2M1, "e3m2": mx.E3M2, "e2m3": mx.E2M3, "e4m3": E4M3}
SCALES = {"e8m0": 8, "e4m3": 8, "float32": 32}  # bits of one block scale


def bits_per_weight(element: str, block_size: int, scale: str, numel: int | None = None) -> float:
    """element bits + scale bits / block_size (+ 32 / numel: NVFP4's float32 tensor scale, when numel is given)."""
    check_choice(element, "element", tuple(ELEMENTS))
    check_positive_int(block_size, "block_size")
    check_choice(scale, "scale", tuple(SCALES))
    extra = 32 / check_positive_int(numel, "numel") if scale == "e4m3" and numel is not None else 0.0
    return ELEMENTS[element].bits + SCALES[scale] / block_size + extra


def quantize_dequantize(W: torch.Tensor, element: str = "e2m1", block_size: int = 32,
                        scale: str = "e8m0") -> torch.Tensor:
    """W_hat = X * elem(W / X) per block (formulas in the module docstring).

    Shapes: W (out, in), in % block_size == 0 -> W_hat (out, in) float32.
    """
    check_weight(W)
    check_choice(element, "element", tuple(ELEMENTS))
    check_positive_int(block_size, "block_size")
    check_choice(scale, "scale", tuple(SCALES))
    if W.shape[1] % block_size:
        raise ValueError(f"block_size must divide in_features={W.shape[1]}, got {block_size}")
    elem = ELEMENTS[element]
    blocks = W.detach().float().reshape(W.shape[0], -1, block_size)  # (out, in / block, block)
    amax = blocks.abs().amax(dim=-1, keepdim=True)  # (out, in / block, 1)
    if scale == "e8m0":
        X = mx.e8m0_decode(mx.e8m0_scale(amax, elem.emax))  # (out, in / block, 1)
        P = decode(encode(blocks / X, elem), elem)
        return (P * X).reshape(W.shape)
    if scale == "e4m3":
        t = mx._nvfp4_tensor_scale(amax.amax())
        s = (amax / elem.max / t).clamp(torch.finfo(torch.float8_e4m3fn).tiny, E4M3.max).to(torch.float8_e4m3fn)
        scaled = (blocks * ((1.0 / t) / s.float())).clamp(-elem.max, elem.max)  # mx's NVFP4 order of operations
        return (decode(encode(scaled, elem), elem) * (t * s.float())).reshape(W.shape)
    X = torch.where(amax > 0, amax / elem.max, torch.ones_like(amax))  # (out, in / block, 1) float32 scale
    return (decode(encode(blocks / X, elem), elem) * X).reshape(W.shape)
