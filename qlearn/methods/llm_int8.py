"""LLM.int8(): vector-wise int8 matmul with a mixed-precision decomposition of outlier columns.

Paper: Dettmers, Lewis, Belkada, Zettlemoyer, "LLM.int8(): 8-bit Matrix Multiplication for
Transformers at Scale", NeurIPS 2022 (arXiv:2208.07339), Section 3, equation (7):

    Y = sum_{j in O} X_j W_j^T  +  s_x s_w^T * sum_{j not in O} X_q,j W_q,j^T
    O = { j : |X_tj| >= threshold for some token t }   (outlier columns, default threshold 6)

The outlier columns O (a few hidden dims, but large) run as a float matmul; everything else is
int8 with one absmax scale per token row of X and one per output row of W ("vector-wise"),
accumulated exactly in int32 and rescaled by the outer product of the scales.

Simplified / chosen here:
- X's row scales are the absmax over the non-outlier columns only (the paper's X_h). bitsandbytes
  zeroes only the outlier *elements* before its absmax, so its row scale can be a little larger.
- W is quantized once over all its columns (as a stored int8 layer must be; the outlier set
  changes with every input). With a float W the outlier columns use W itself (the paper); with
  an `Int8Weight` they use its dequantized columns, as bitsandbytes' has_fp16_weights=False does.
- Convention: r = scale * q with zero_point 0 and scale = absmax / 127 (bitsandbytes stores the
  absmax itself; scale = absmax / 127 at this file's boundary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.granularity import PerChannel, PerToken
from ..core.primitives import choose_qparams, quantize
from ..core.validation import check_float_tensor
from ..inference.kernels import int_mm_is_exact

QMAX = 127
MAX_EXACT_IN = (2 ** 31 - 1) // (QMAX * QMAX)  # int32 holds any sum of this many int8 * int8 products


def check_threshold(threshold) -> float | None:
    """`threshold` is None (no outlier columns) or a finite number > 0."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a positive number or None (no outlier columns), got {threshold!r}")
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a finite number > 0, or None for plain vector-wise int8; got {threshold}")
    return float(threshold)


def _check_2d(x, name: str, what: str) -> torch.Tensor:
    check_float_tensor(x, name, allow_empty=True)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D {what} with at least one column, got shape {tuple(x.shape)}")
    return x


def outlier_columns(X: torch.Tensor, threshold) -> torch.Tensor:
    """The input features j with |X_tj| >= threshold for at least one token t, in increasing order.

    Shapes: X (tokens, in) -> (k,) int64 indices; k = 0 when threshold is None.
    """
    _check_2d(X, "X", "activations (tokens, in)")
    threshold = check_threshold(threshold)
    if threshold is None or X.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=X.device)
    return torch.nonzero((X.abs() >= threshold).any(dim=0)).reshape(-1)  # (k,)


def int_matmul(A_q: torch.Tensor, B_q: torch.Tensor) -> torch.Tensor:
    """Exact integer matmul of int8 codes, accumulated in int32: C = A_q @ B_q^T.

    torch._int_mm on the CPU and on CUDA where its shape rules hold and a one-time probe shows it is
    exact (on CPUs without VNNI it is not, see `qlearn.inference.kernels.int_mm_is_exact`); elsewhere a
    float64 matmul, which is exact too (every partial sum is an integer below 2^31 < 2^53).

    Shapes: A_q (m, k) int8, B_q (n, k) int8 -> (m, n) int32.
    """
    for t, name in ((A_q, "A_q"), (B_q, "B_q")):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int8 or t.ndim != 2:
            raise TypeError(f"{name} must be a 2-D int8 tensor of codes, got "
                            f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
    if A_q.shape[1] != B_q.shape[1]:
        raise ValueError(f"A_q (m, k) and B_q (n, k) must share k, got {tuple(A_q.shape)} and {tuple(B_q.shape)}")
    if A_q.shape[1] > MAX_EXACT_IN:
        raise ValueError(f"k = {A_q.shape[1]} could overflow int32; at most {MAX_EXACT_IN} columns are exact")
    m, k = A_q.shape
    n = B_q.shape[0]
    shapes_ok = (A_q.device.type == "cpu" and m and n and k) or \
        (A_q.device.type == "cuda" and m > 16 and k % 8 == 0 and n % 8 == 0)
    if shapes_ok and int_mm_is_exact(A_q.device.type):
        return torch._int_mm(A_q.contiguous(), B_q.contiguous().t())  # (m, n); B^T column-major, no copy
    return (A_q.double() @ B_q.double().t()).to(torch.int32)  # (m, n), exact


@dataclass(frozen=True, eq=False)
class Int8Weight:
    """A weight stored vector-wise: W_hat = scale * W_q, one absmax scale per output row.

    Shapes: W_q (out, in) int8 in -127..127, scale (out, 1) float32.
    """

    W_q: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def from_float(cls, W: torch.Tensor) -> "Int8Weight":
        """scale = max_j |W_ij| / 127 per row i, W_q = round(W / scale)."""
        _check_2d(W, "W", "a weight (out, in)")
        qp = choose_qparams(W, bits=8, symmetric=True, granularity=PerChannel(0))  # scale (out, 1)
        return cls(quantize(W, qp), qp.scale)

    def dequantize(self) -> torch.Tensor:
        return self.scale * self.W_q.float()  # (out, in)

    @property
    def shape(self) -> torch.Size:
        return self.W_q.shape


def int8_mixed_matmul(X: torch.Tensor, W, threshold=6.0, return_outliers: bool = False):
    """Y = X_O W_O^T + (s_x s_w^T) * (X_q W_q^T): LLM.int8() with outlier columns O kept in float.

    X_h = X with the columns O set to 0; s_x = max_j |X_h,tj| / 127 per token, X_q = round(X_h / s_x);
    W_q, s_w from `Int8Weight.from_float(W)` (or W itself if it is an Int8Weight).
    threshold=None: O is empty, plain vector-wise int8; any threshold above max|X| gives the same.
    return_outliers=True returns (Y, O).

    Shapes: X (tokens, in), W (out, in) float or Int8Weight -> Y (tokens, out) in X's dtype; O (k,) int64.
    """
    _check_2d(X, "X", "activations (tokens, in)")
    if isinstance(W, Int8Weight):
        W_int8, W_float = W, None
    else:
        _check_2d(W, "W", "a weight (out, in)")
        W_int8, W_float = Int8Weight.from_float(W), W
    if W_int8.shape[1] != X.shape[1]:
        raise ValueError(f"X (tokens, in) and W (out, in) must share in, got {tuple(X.shape)} and {tuple(W_int8.shape)}")
    if not isinstance(return_outliers, bool):
        raise TypeError(f"return_outliers must be True or False, got {return_outliers!r}")
    cols = outlier_columns(X, threshold)  # (k,)
    X32 = X.float()
    X_h = X32.index_fill(1, cols, 0.0)  # (tokens, in), outlier columns zeroed
    if X.shape[0]:
        qp = choose_qparams(X_h, bits=8, symmetric=True, granularity=PerToken())  # scale (tokens, 1)
        X_q, s_x = quantize(X_h, qp), qp.scale
    else:
        X_q, s_x = torch.zeros(X.shape, dtype=torch.int8, device=X.device), X32.new_ones(0, 1)
    s_w = W_int8.scale.to(X.device).reshape(1, -1)  # (1, out)
    Y = int_matmul(X_q, W_int8.W_q.to(X.device)).float() * (s_x * s_w)  # (tokens, out)
    if cols.numel():
        if W_float is not None:
            W_cols = W_float[:, cols].float()  # (out, k)
        else:
            W_cols = W_int8.scale * W_int8.W_q[:, cols].float()  # (out, k), dequantized columns only
        Y = Y + X32[:, cols] @ W_cols.t().to(X.device)  # (tokens, out)
    Y = Y.to(X.dtype)
    return (Y, cols) if return_outliers else Y
