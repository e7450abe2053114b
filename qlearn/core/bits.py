"""What a quantized tensor really costs: effective bits per weight, counting scales and zero points.

Every block of a granularity stores one scale (and, for the asymmetric scheme, one zero
point) next to its integer codes, so the storage per weight is

    effective_bits = bits + n_blocks * (scale_bits + zero_point_bits) / numel

The course's convention is what `qlearn.QuantLinear` really stores (and `model_size_bytes`
counts): a float32 scale (SCALE_BITS = 32) and an int8 zero point (ZERO_POINT_BITS = 8) per
block. For a weight (out, in) per group of g that is bits + 40 / g: 4-bit with g = 128 costs
4.3125 bits per weight (0.539 bytes), with g = 32 it costs 5.25. Per channel the overhead is
40 / in, per tensor it is practically zero.

Papers (GPTQ, AWQ) and most LLM tables count an fp16 scale and an fp16 zero point instead,
bits + 32 / g (4.25 at g = 128): pass `**PAPERS_FP16` to get that convention, labelled as such.

A symmetric scheme needs no zero point, so none is counted. Two places where QuantLinear's
real bytes (`model_size_bytes`) differ, on purpose: it keeps an all-zero int8 zero_point
buffer even for a symmetric layer (one byte per block, so that one class serves both schemes),
and it stores 3-bit codes in 4-bit slots and 5..7-bit codes in whole bytes (`packing.py`).
"""

from __future__ import annotations

import math

import torch

from .granularity import Granularity, PerTensor, check_granularity
from .validation import check_bits, check_bool

__all__ = ["PAPERS_FP16", "SCALE_BITS", "ZERO_POINT_BITS", "effective_bits", "metadata_bits", "storage_bytes"]

SCALE_BITS = 32       # QuantLinear's scale buffer: float32
ZERO_POINT_BITS = 8   # QuantLinear's zero_point buffer: int8
PAPERS_FP16 = {"scale_bits": 16, "zero_point_bits": 16}  # the papers' count: an fp16 scale and an fp16 zero point


def _check_shape(shape) -> torch.Size:
    if isinstance(shape, torch.Tensor):
        raise TypeError("pass the tensor's shape (x.shape), not the tensor itself")
    try:
        shape = torch.Size(shape)
    except (TypeError, ValueError):
        raise TypeError(f"shape must be a tuple of positive ints such as (384, 384), got {shape!r}") from None
    if len(shape) == 0 or any(n < 1 for n in shape):
        raise ValueError(f"shape must have at least one dim and only positive sizes, got {tuple(shape)}")
    return shape


def _check_meta_bits(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (32 for float32, 16 for fp16, 8 for int8, 0 if not "
                         f"stored), got {value!r}")
    return value


def metadata_bits(shape, granularity: Granularity = PerTensor(), symmetric: bool = False,
                  scale_bits: int = SCALE_BITS, zero_point_bits: int = ZERO_POINT_BITS) -> int:
    """Total bits of the scales and zero points: n_blocks * (scale_bits + zero_point_bits).

    A symmetric scheme stores no zero point (it is always 0).
    Shapes: shape (...) of the quantized tensor -> int.
    """
    shape = _check_shape(shape)
    check_granularity(granularity).check(shape)
    check_bool(symmetric, "symmetric")
    per_block = (_check_meta_bits(scale_bits, "scale_bits")
                 + (0 if symmetric else _check_meta_bits(zero_point_bits, "zero_point_bits")))
    return granularity.num_blocks(shape) * per_block


def effective_bits(shape, bits: int, granularity: Granularity = PerTensor(), symmetric: bool = False,
                   scale_bits: int = SCALE_BITS, zero_point_bits: int = ZERO_POINT_BITS) -> float:
    """Bits stored per element, codes plus metadata: bits + metadata_bits / numel.

    Example: effective_bits((384, 384), 4, PerGroup(128)) == 4.3125 (float32 scale, int8 zero point);
    effective_bits((384, 384), 4, PerGroup(128), **PAPERS_FP16) == 4.25 (the papers' fp16 scale and zero point).
    Shapes: shape (...) of the quantized tensor -> float.
    """
    check_bits(bits)
    extra = metadata_bits(shape, granularity, symmetric, scale_bits, zero_point_bits)
    return bits + extra / math.prod(_check_shape(shape))


def storage_bytes(shape, bits: int, granularity: Granularity = PerTensor(), symmetric: bool = False,
                  scale_bits: int = SCALE_BITS, zero_point_bits: int = ZERO_POINT_BITS) -> float:
    """Bytes of the packed codes plus metadata: effective_bits * numel / 8."""
    return (effective_bits(shape, bits, granularity, symmetric, scale_bits, zero_point_bits)
            * math.prod(_check_shape(shape)) / 8)
