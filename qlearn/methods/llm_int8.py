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

Layer and model level: Int8MixedLinear stores the weight once as int8 codes per output row (weight_q, scale
buffers); the outlier columns are found again for every input, as in bitsandbytes'
Linear8bitLt(has_fp16_weights=False), and multiply the dequantized weight columns. It keeps statistics of the
columns it ran in float (`quant_stats()`, gathered by quantize_model's report: `report.stats()`).
`quantize_model(model, bits=8, method="llm_int8", threshold=6.0)` replaces a model's Linears by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.granularity import PerChannel, PerToken
from ..core.primitives import choose_qparams, quantize
from ..core.validation import check_bool, check_float_tensor, check_number, check_positive_int, check_weight
from ..inference import serialize
from ..inference.kernels import int_mm_is_exact
from ..inference.registry import QuantMethod, get_method, register_method

__all__ = ["MAX_EXACT_IN", "QMAX", "Int8MixedLinear", "Int8Weight", "check_threshold", "int8_mixed_matmul",
           "int_matmul", "outlier_columns", "quantize_layer"]

QMAX = 127
MAX_EXACT_IN = (2 ** 31 - 1) // (QMAX * QMAX)  # int32 holds any sum of this many int8 * int8 products


def check_threshold(threshold) -> float | None:
    """`threshold` is None (no outlier columns) or a finite number > 0."""
    if threshold is None:
        return None
    return check_number(threshold, "threshold (or None for plain vector-wise int8)", 0.0, low_inclusive=False)


def _check_2d(x, name: str, what: str) -> torch.Tensor:
    check_float_tensor(x, name, allow_empty=True)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must be 2-D {what} with at least one column, got shape {tuple(x.shape)}")
    if x.dtype.itemsize > 4 and not bool(torch.isfinite(x.float()).all()):
        raise ValueError(f"{name} holds values beyond float32's range (the int8 scales and outlier path are float32)")
    return x


def outlier_columns(X: torch.Tensor, threshold) -> torch.Tensor:
    """The input features j with |X_tj| >= threshold for at least one token t, in increasing order.

    Shapes: X (tokens, in) -> (k,) int64 indices; k = 0 when threshold is None.
    """
    _check_2d(X, "X", "activations (tokens, in)")
    return _outlier_columns(X, check_threshold(threshold))


def _outlier_columns(X: torch.Tensor, threshold: float | None) -> torch.Tensor:
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
        """scale = max_j |W_ij| / 127 per row i, W_q = round(W / scale).

        Shapes: W (out, in) -> W_q (out, in) int8, scale (out, 1) float32.
        """
        check_weight(W)
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
        raise ValueError(f"X (tokens, in) and W (out, in) must share in, got {tuple(X.shape)} and "
                         f"{tuple(W_int8.shape)}")
    check_bool(return_outliers, "return_outliers")
    Y, cols = _mixed_matmul(X, W_int8, W_float, check_threshold(threshold))
    if not bool(torch.isfinite(Y).all()):
        raise ValueError(f"X W^T overflows {X.dtype}: X's values (up to {float(X.abs().max()):.3g}) are too large for "
                         "the output's dtype; scale X down or compute in float32")
    return (Y, cols) if return_outliers else Y


def _mixed_matmul(X: torch.Tensor, W_int8: Int8Weight, W_float: torch.Tensor | None, threshold: float | None):
    """int8_mixed_matmul without the argument checks (the layer's forward). Shapes: as int8_mixed_matmul."""
    cols = _outlier_columns(X, threshold)  # (k,)
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
    return Y.to(X.dtype), cols


class Int8MixedLinear(nn.Module):
    """Y = int8_mixed_matmul(X, Int8Weight(W_q, scale), threshold) + b, leading dims of X kept.

    Shapes: weight_q (out, in) int8, scale (out, 1) float32, bias (out,) or None;
            x (..., in) -> y (..., out).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold=6.0,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        check_positive_int(in_features, "in_features")
        check_positive_int(out_features, "out_features")
        check_bool(bias, "bias")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.in_features, self.out_features = in_features, out_features
        self.threshold = check_threshold(threshold)
        self.register_buffer("weight_q", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.ones(out_features, 1, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        self.outliers_seen = torch.zeros(in_features, dtype=torch.bool)  # (in,), not a buffer: not model bytes
        self.reset_outlier_stats()

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold=6.0) -> "Int8MixedLinear":
        """Quantize a trained nn.Linear's weight to int8 per output row (absmax / 127)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        if W.is_meta:
            raise ValueError("the Linear layer's weight is on the meta device (no values to quantize)")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, threshold=threshold,
                    dtype=W.dtype, device=W.device)
        w = Int8Weight.from_float(W)
        layer.weight_q.copy_(w.W_q)
        layer.scale.copy_(w.scale)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "threshold": self.threshold, "dtype": self.bias.dtype if self.bias is not None else torch.float32}

    def quant_stats(self) -> dict[str, int]:
        """Input columns kept in float: in the last forward, at most in one forward, ever; and forwards run."""
        return {"float_columns_last": int(self.last_outliers.numel()), "float_columns_max": self.max_outliers,
                "float_columns_seen": int(self.outliers_seen.sum()), "forwards": self.forwards}

    def reset_outlier_stats(self) -> None:
        """Forget the outlier columns seen so far."""
        self.last_outliers = torch.zeros(0, dtype=torch.long, device=self.outliers_seen.device)  # (k,) last forward
        self.max_outliers = 0  # the largest k of any forward
        self.outliers_seen.zero_()  # (in,) union over forwards, on the layer's device (no host copy per forward)
        self.forwards = 0

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight W_hat = scale * W_q (out, in), for code that reads `.weight`."""
        return self.scale * self.weight_q.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"Int8MixedLinear input must be a floating-point tensor, got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Int8MixedLinear expects inputs of shape (..., {self.in_features}), got {tuple(x.shape)}")
        x2 = x.reshape(-1, self.in_features)  # (tokens, in)
        y, cols = _mixed_matmul(x2, Int8Weight(self.weight_q, self.scale), None, self.threshold)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        self.last_outliers = cols  # stays on the input's device: no host copy per forward
        if self.outliers_seen.device != cols.device:
            self.outliers_seen = self.outliers_seen.to(cols.device)
        self.max_outliers = max(self.max_outliers, int(cols.numel()))
        self.outliers_seen[cols] = True
        self.forwards += 1
        return y.reshape(*x.shape[:-1], self.out_features)  # (..., out)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"threshold={self.threshold}")


# ---- model level ---------------------------------------------------------------------------------------------

def quantize_layer(name, linear, X, bits, granularity, symmetric, threshold=6.0) -> Int8MixedLinear:
    """int8 weights per output row; outlier input columns (|x| >= threshold) run in float at every forward.

    Shapes: linear.weight (out, in) -> Int8MixedLinear (out, in).
    """
    get_method("llm_int8").check_layer(linear, X, bits, granularity, symmetric)
    return Int8MixedLinear.from_linear(linear, threshold=threshold)


register_method(QuantMethod("llm_int8", quantize_layer, bits=(8,), symmetric=(True,), granularities=(PerChannel,),
                            description="LLM.int8(): int8 per row, outlier columns in float (Int8MixedLinear)"),
                replace=True)
serialize.register_layer_type(Int8MixedLinear)
