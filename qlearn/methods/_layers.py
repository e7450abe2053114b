"""Shared by the model-level methods: a granularity as a group size, and a UniformWeight as a QuantLinear."""

from __future__ import annotations

from torch import nn

from ..core.granularity import PerChannel, PerGroup
from ..inference.linear import QuantLinear
from .weight import UniformWeight


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
    qparams = qw.qparams()
    layer = cls(linear.in_features, linear.out_features, bits=qw.bits, granularity=qparams.granularity,
                        symmetric=qparams.symmetric, bias=linear.bias is not None, kernel=kernel,
                        activations=activations, dtype=linear.weight.dtype, device=linear.weight.device)
    layer.set_weight(qw.codes(), qparams)
    if linear.bias is not None:
        layer.bias.data.copy_(linear.bias.detach())
    return layer
