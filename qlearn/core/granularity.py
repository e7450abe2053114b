"""How many (scale, zero_point) pairs a tensor gets: one per tensor, channel, group or token.

Every granularity answers one question for the generic quantization path in
`primitives.py`: how to view a tensor as blocks so that reducing over some dims gives
one statistic (min, max) per block. The view is a plain reshape, so no Python loop
over channels or groups is ever needed.

    PerTensor()          x (any shape)      -> stats (1, 1, ..., 1)
    PerChannel(axis=0)   W (out, in)        -> stats (out, 1)
    PerGroup(128)        W (out, in)        -> view (out, in/128, 128) -> stats (out, in/128, 1)
    PerToken()           X (..., tokens, d) -> stats (..., tokens, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Granularity", "PerChannel", "PerGroup", "PerTensor", "PerToken", "check_granularity"]


class Granularity:
    """Base class: a rule for splitting a tensor into blocks that share quantization parameters."""

    def check(self, shape: torch.Size) -> None:
        """Raise ValueError if a tensor of `shape` cannot be split this way."""

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """A view of `x` whose `reduce_dims` are the elements of one block."""
        return x

    def reduce_dims(self, ndim: int) -> tuple[int, ...]:
        """Dims of the block view (of `ndim` dims) that belong to one block."""
        raise NotImplementedError

    def stats_shape(self, shape: torch.Size) -> torch.Size:
        """Shape of the scale / zero point for a tensor of `shape` (keepdim over the block view)."""
        self.check(shape)
        view = self.to_blocks(torch.empty(shape, device="meta"))
        dims = set(self.reduce_dims(view.ndim))
        return torch.Size(1 if d in dims else n for d, n in enumerate(view.shape))

    def num_blocks(self, shape: torch.Size) -> int:
        """How many (scale, zero_point) pairs a tensor of `shape` needs."""
        return int(torch.Size(self.stats_shape(shape)).numel())


@dataclass(frozen=True)
class PerTensor(Granularity):
    """One scale (and zero point) for the whole tensor."""

    def reduce_dims(self, ndim: int) -> tuple[int, ...]:
        return tuple(range(ndim))


@dataclass(frozen=True)
class PerChannel(Granularity):
    """One scale per slice along `axis`: for a Linear weight W (out, in), axis=0 is one per output row."""

    axis: int = 0

    def __post_init__(self):
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise TypeError(f"PerChannel axis must be an int, got {type(self.axis).__name__}")

    def check(self, shape: torch.Size) -> None:
        if not -len(shape) <= self.axis < len(shape):
            raise ValueError(
                f"PerChannel(axis={self.axis}) is out of range for a tensor with {len(shape)} dims "
                f"(shape {tuple(shape)}); allowed axes are {-len(shape)}..{len(shape) - 1}"
            )

    def reduce_dims(self, ndim: int) -> tuple[int, ...]:
        axis = self.axis % ndim
        return tuple(d for d in range(ndim) if d != axis)


@dataclass(frozen=True)
class PerGroup(Granularity):
    """One scale per `group_size` consecutive elements along the last axis.

    Shapes: x (..., n) is viewed as (..., n // group_size, group_size); n % group_size == 0.
    """

    group_size: int

    def __post_init__(self):
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int):
            raise TypeError(f"PerGroup group_size must be an int, got {type(self.group_size).__name__}")
        if self.group_size < 1:
            raise ValueError(f"PerGroup group_size must be a positive int, got {self.group_size}")

    def check(self, shape: torch.Size) -> None:
        if len(shape) == 0:
            raise ValueError("PerGroup needs a tensor with at least one dim, got a 0-d tensor")
        if shape[-1] % self.group_size:
            raise ValueError(
                f"PerGroup({self.group_size}) does not divide the last axis of size {shape[-1]} "
                f"(shape {tuple(shape)}); pick a group size that divides {shape[-1]}"
            )

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], x.shape[-1] // self.group_size, self.group_size)  # (..., n/g, g)

    def reduce_dims(self, ndim: int) -> tuple[int, ...]:
        return (ndim - 1,)


@dataclass(frozen=True)
class PerToken(Granularity):
    """One scale per token (row) of an activation X (..., tokens, features): reduce the last axis."""

    def check(self, shape: torch.Size) -> None:
        if len(shape) == 0:
            raise ValueError("PerToken needs a tensor with at least one dim, got a 0-d tensor")

    def reduce_dims(self, ndim: int) -> tuple[int, ...]:
        return (ndim - 1,)


def check_granularity(granularity) -> Granularity:
    """Return `granularity` if it is a Granularity instance, else raise a TypeError naming the choices."""
    if isinstance(granularity, type) and issubclass(granularity, Granularity):
        raise TypeError(f"pass an instance such as {granularity.__name__}(...), not the class itself")
    if not isinstance(granularity, Granularity):
        raise TypeError(
            "granularity must be PerTensor(), PerChannel(axis), PerGroup(group_size) or PerToken(), "
            f"got {granularity!r}"
        )
    return granularity
