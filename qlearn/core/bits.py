"""What a quantized tensor really costs: effective bits per weight, counting scales and zero points.

Every block of a granularity stores one scale (and, for the asymmetric scheme, one zero
point) next to its integer codes, so the storage per weight is

    effective_bits = bits + n_blocks * (scale_bits + zero_point_bits) / numel

For a weight (out, in) quantized per group of g with an fp16 scale and an fp16 zero point
this is bits + 32 / g: 4-bit with g = 128 costs 4.25 bits per weight, with g = 32 it costs 5.
Per channel the overhead is 32 / in, per tensor it is practically zero.
"""

from __future__ import annotations

import math

import torch

from .validation import check_bits, check_bool
from .granularity import Granularity, PerTensor, check_granularity


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
        raise ValueError(f"{name} must be a non-negative int (16 for fp16, 32 for fp32, 0 if not stored), got {value!r}")
    return value


def metadata_bits(shape, granularity: Granularity = PerTensor(), symmetric: bool = False,
                  scale_bits: int = 16, zero_point_bits: int = 16) -> int:
    """Total bits of the scales and zero points: n_blocks * (scale_bits + zero_point_bits).

    A symmetric scheme stores no zero point (it is always 0).
    Shapes: shape (...) of the quantized tensor -> int.
    """
    shape = _check_shape(shape)
    check_granularity(granularity).check(shape)
    check_bool(symmetric, "symmetric")
    per_block = _check_meta_bits(scale_bits, "scale_bits") + (0 if symmetric else _check_meta_bits(zero_point_bits, "zero_point_bits"))
    return granularity.num_blocks(shape) * per_block


def effective_bits(shape, bits: int, granularity: Granularity = PerTensor(), symmetric: bool = False,
                   scale_bits: int = 16, zero_point_bits: int = 16) -> float:
    """Bits stored per element, codes plus metadata: bits + metadata_bits / numel.

    Example: effective_bits((384, 384), 4, PerGroup(128)) == 4.25 (fp16 scale and fp16 zero point).
    Shapes: shape (...) of the quantized tensor -> float.
    """
    check_bits(bits)
    extra = metadata_bits(shape, granularity, symmetric, scale_bits, zero_point_bits)
    return bits + extra / math.prod(_check_shape(shape))


def storage_bytes(shape, bits: int, granularity: Granularity = PerTensor(), symmetric: bool = False,
                  scale_bits: int = 16, zero_point_bits: int = 16) -> float:
    """Bytes of the packed codes plus metadata: effective_bits * numel / 8."""
    return effective_bits(shape, bits, granularity, symmetric, scale_bits, zero_point_bits) * math.prod(_check_shape(shape)) / 8
