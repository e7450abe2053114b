"""Round to nearest (RTN) with min-max scales: the baseline every other weight method is measured against.

Objective: none; each group is mapped to the integer grid that spans its own range,

    scale, zero_point = min-max of W[row, group]          (primitives.choose_qparams)
    W_q   = clamp(round(W / scale) + zero_point, qmin, qmax)
    W_hat = scale * (W_q - zero_point)

This is also the grid that GPTQ and AWQ quantize onto; they differ only in which weights they round.
Data-free: X is accepted (and checked) so that every method has the same signature, and unused.
"""

from __future__ import annotations

import torch

from ..core.primitives import choose_qparams, quantize
from ..core.validation import check_bits, check_bool, check_group_size, check_inputs, check_weight
from .weight import UniformWeight, granularity_for

__all__ = ["quantize_weight"]


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, bits: int = 4, group_size: int | None = 128,
                    symmetric: bool = False) -> UniformWeight:
    """Min-max round to nearest per group of `group_size` input columns (None: one scale per output row).

    W_q = clamp(round(W / scale) + zero_point, qmin, qmax), W_hat = scale * (W_q - zero_point)

    Shapes: W (out, in); X (tokens, in) or None (unused) -> UniformWeight of W (out, in).
    """
    check_weight(W)
    check_inputs(X, W, required=False, method="rtn")
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    granularity = granularity_for(check_group_size(group_size, W.shape[1]))
    qparams = choose_qparams(W, bits=bits, symmetric=symmetric, granularity=granularity)
    W_q = quantize(W, qparams)  # (out, in) int8
    return UniformWeight.from_codes(W_q, qparams.scale, None if symmetric else qparams.zero_point, bits,
                                    granularity, W.dtype)
