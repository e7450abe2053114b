"""HQQLinear: a QuantLinear that keeps HQQ's float zero point (see hqq.py for the solver).

    W_hat = scale * (W_q - zero_point)        per group; W_q integer codes, zero_point float32
    Y     = X @ W_hat^T + b

HQQ's solver moves the zero point off the integer grid: that is the whole gain over round to nearest, so
rounding it to an int8 (what QuantLinear stores) would throw the method away. This layer stores it as
float32 (4 bytes per group instead of 1, counted by model_size_bytes) and always runs the reference
path (dequantize, then a float matmul): the fused kernels of `kernels.py` are chosen for integer zero points.

Shapes: X (..., in) -> Y (..., out); zero_point granularity.stats_shape((out, in)) float32.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.granularity import PerGroup
from ..inference import packing
from ..inference.linear import QuantLinear
from .hqq import HQQWeight


class HQQLinear(QuantLinear):
    """A Linear layer with `bits`-bit codes and a float zero point per group. Build it with `from_weight`."""

    def __init__(self, in_features: int, out_features: int, bits: int = 4, granularity=PerGroup(64),
                 bias: bool = True, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(in_features, out_features, bits=bits, granularity=granularity, symmetric=False, bias=bias,
                         kernel="reference", dtype=dtype, device=device)
        self.zero_point = self.zero_point.to(torch.float32)

    @property
    def kernel(self) -> str:
        return "reference"

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in ("auto", "reference"):
            raise ValueError(f"kernel must be 'auto' or 'reference' (HQQLinear always runs the reference), got {value!r}")
        self._cache = None

    @classmethod
    def from_weight(cls, qw: HQQWeight, bias: torch.Tensor | None = None) -> "HQQLinear":
        """The layer that stores `qw` (from hqq.quantize_weight) and `bias` (out,) or None."""
        if not isinstance(qw, HQQWeight):
            raise TypeError(f"qw must be an HQQWeight from hqq.quantize_weight, got {type(qw).__name__}")
        out_features, in_features = qw.shape
        layer = cls(in_features, out_features, bits=qw.bits, granularity=qw.granularity, bias=bias is not None,
                    dtype=qw.dtype, device=qw.W_q.device)
        codes = qw.codes()  # (out, in) int8
        layer.weight_q = codes if qw.bits > 4 else packing.pack(codes, qw.bits)
        layer.scale = qw.scale.detach().to(torch.float32).clone()
        layer.zero_point = qw.zero_point.detach().to(torch.float32).clone()
        if bias is not None:
            with torch.no_grad():
                layer.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, granularity=PerGroup(64), **hqq_options) -> "HQQLinear":
        """hqq.quantize_weight(linear.weight, ...) stored in an HQQLinear with the layer's bias."""
        from . import hqq

        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        group_size = getattr(granularity, "group_size", None)
        qw = hqq.quantize_weight(linear.weight.detach(), bits=bits, group_size=group_size, **hqq_options)
        return cls.from_weight(qw, linear.bias)

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "granularity": self.granularity, "bias": self.bias is not None, "dtype": self.dtype}

    def set_weight(self, W_q, qparams):
        raise TypeError("HQQLinear stores a float zero point: build it with HQQLinear.from_weight(hqq_weight)")

    def qparams(self):
        raise ValueError("HQQLinear has a float zero point; a QParams holds integer zero points only")

    def dequantized_weight(self) -> torch.Tensor:
        """W_hat = scale * (W_q - zero_point), shape (out, in), in the original weight dtype."""
        q = self.granularity.to_blocks(self.codes().float())  # (out, in/g, g) or (out, in)
        W_hat = self.scale * (q - self.zero_point)  # same shape
        return W_hat.reshape(self.out_features, self.in_features).to(self.dtype)  # (out, in)
