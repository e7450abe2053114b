"""What every weight method returns (the tensors it really stores, `.dequantize()`, `.nbytes`), and its layer.

    qw = method.quantize_weight(W, X, bits=4, group_size=128)
    W_hat = qw.dequantize()      # (out, in), W's dtype: the weight the layer really applies
    qw.nbytes                    # sum of numel * element_size over qw.stored().values()
    qw.bits_per_weight           # 8 * nbytes / (out * in)

`UniformWeight` is the integer grid of round-to-nearest, GPTQ, HQQ and AWQ:

    W_hat = scale * (W_q - zero_point)        one (scale, zero_point) per group of the input axis

Storage is the one `QuantLinear` uses, so a model-level pass stores the same bytes: codes packed with
`packing.pack` (2-bit codes four to a byte, 3- and 4-bit codes two to a byte, 5..8 bits one byte
each), `scale` float32 and `zero_point` int8, both of shape `granularity.stats_shape((out, in))`.
A symmetric grid stores no zero point (it is 0). HQQ's zero point is a float (the solver moves it
off the integer grid), stored as float32.

Model level: `uniform_layer(linear, qw)` puts a UniformWeight into a QuantLinear (or a subclass), the layer
every integer-grid method (rtn, gptq, awq) replaces an nn.Linear with; `group_size_of` turns
quantize_model's granularity into a method's group size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.granularity import Granularity, PerChannel, PerGroup
from ..core.primitives import QParams, cast_finite, dequantize, qrange
from ..inference import packing
from ..inference.linear import QuantLinear

__all__ = ["QuantizedWeight", "UniformWeight", "granularity_for", "group_size_of", "uniform_layer"]


def granularity_for(group_size) -> Granularity:
    """PerGroup(group_size) along the input axis, or PerChannel(0) (one scale per output row) for None."""
    return PerChannel(0) if group_size is None else PerGroup(group_size)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """Base class: a quantized weight of `shape` (out, in) that dequantizes to `dtype`."""

    shape: torch.Size
    dtype: torch.dtype

    def stored(self) -> dict[str, torch.Tensor]:
        """Name -> every tensor this weight keeps; these, and only these, are counted in `nbytes`."""
        raise NotImplementedError

    def dequantize(self) -> torch.Tensor:
        """W_hat (out, in) in `dtype`."""
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes as stored: sum of numel * element_size over `stored()`."""
        return sum(t.numel() * t.element_size() for t in self.stored().values())

    @property
    def bits_per_weight(self) -> float:
        """8 * nbytes / (out * in): codes plus every scale, zero point or absmax."""
        return 8 * self.nbytes / self.shape.numel()


@dataclass(frozen=True, eq=False)
class UniformWeight(QuantizedWeight):
    """Packed integer codes on a uniform grid: W_hat = scale * (W_q - zero_point), per group.

    Shapes: W_q (out, packing.packed_length(in, bits)) uint8; scale and zero_point
    `granularity.stats_shape((out, in))`: (out, in / g, 1) per group, (out, 1) per row.
    zero_point is int8, float32 (HQQ) or None (symmetric, zero_point = 0).
    """

    W_q: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    bits: int
    granularity: Granularity

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, zero_point, bits: int,
                   granularity: Granularity, dtype: torch.dtype, **extra) -> "UniformWeight":
        """Pack int8 codes (out, in) and keep scale float32, an integer zero point int8 (None stays None)."""
        if zero_point is not None:
            zero_point = zero_point.to(torch.float32 if zero_point.is_floating_point() else torch.int8)
        return cls(shape=codes.shape, dtype=dtype, W_q=packing.pack(codes, bits), scale=scale.to(torch.float32),
                   zero_point=zero_point, bits=bits, granularity=granularity, **extra)

    def stored(self) -> dict[str, torch.Tensor]:
        out = {"W_q": self.W_q, "scale": self.scale}
        if self.zero_point is not None:
            out["zero_point"] = self.zero_point
        return out

    def codes(self) -> torch.Tensor:
        """The signed codes W_q (out, in), int8 in [qmin, qmax]."""
        return packing.unpack(self.W_q, self.bits, self.shape[1])

    def qparams(self) -> QParams:
        """scale and zero_point as a QParams (for QuantLinear.set_weight); not for HQQ's float zero point."""
        if self.zero_point is not None and self.zero_point.is_floating_point():
            raise ValueError("this weight has a float zero point (HQQ); a QParams holds integer zero points only")
        zero_point = torch.zeros_like(self.scale, dtype=torch.int32) if self.zero_point is None \
            else self.zero_point.to(torch.int32)
        qmin, qmax = qrange(self.bits)
        return QParams(self.scale, zero_point, self.bits, self.zero_point is None, qmin, qmax,
                       self.granularity, self.dtype)

    def dequantize(self) -> torch.Tensor:
        if self.zero_point is None or not self.zero_point.is_floating_point():
            return dequantize(self.codes(), self.qparams())
        q = self.granularity.to_blocks(self.codes().float())  # (out, in/g, g) or (out, in)
        return cast_finite((self.scale * (q - self.zero_point)).reshape(self.shape), self.dtype)


def group_size_of(granularity) -> int | None:
    """PerGroup(g) -> g; PerChannel(0) -> None (one scale per output row)."""
    if isinstance(granularity, PerGroup):
        return granularity.group_size
    if isinstance(granularity, PerChannel) and granularity.axis in (0, -2):
        return None
    raise ValueError(f"weight methods take PerGroup(g) or PerChannel(0) (one scale per output row), got {granularity}")


def uniform_layer(linear: nn.Linear, qw: UniformWeight, activations=None, kernel: str = "auto",
                  cls: type = QuantLinear) -> QuantLinear:
    """A QuantLinear (or subclass `cls`) with qw's codes, scale and integer zero point (set_weight), linear's bias."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    if not isinstance(qw, UniformWeight):
        raise TypeError(f"qw must be a UniformWeight (from rtn / gptq quantize_weight), got {type(qw).__name__}")
    if tuple(qw.shape) != tuple(linear.weight.shape):
        raise ValueError(f"qw has shape {tuple(qw.shape)}, linear's weight {tuple(linear.weight.shape)}")
    qparams = qw.qparams()
    layer = cls(linear.in_features, linear.out_features, bits=qw.bits, granularity=qparams.granularity,
                symmetric=qparams.symmetric, bias=linear.bias is not None, kernel=kernel,
                activations=activations, dtype=linear.weight.dtype, device=linear.weight.device)
    layer.set_weight(qw.codes(), qparams)
    if linear.bias is not None:
        layer.bias.data.copy_(linear.bias.detach())
    return layer
