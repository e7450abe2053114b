"""Input checks shared by the public functions: clear ValueError / TypeError messages."""

from __future__ import annotations

import torch

MIN_BITS, MAX_BITS = 2, 8


def check_bits(bits) -> int:
    """Return `bits` if it is an int in MIN_BITS..MAX_BITS, else raise."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be from {MIN_BITS} to {MAX_BITS}, got {bits}")
    return bits


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_float_tensor(x, name: str = "x", allow_empty: bool = False) -> torch.Tensor:
    """Raise unless `x` is a non-empty floating-point tensor with only finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, float16, bfloat16), got {x.dtype}")
    if x.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); it needs at least one element")
    if x.dtype.itemsize == 1:
        raise TypeError(f"{name} is {x.dtype}; cast fp8 tensors to float32 before quantizing")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; only finite values can be quantized")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names=("a", "b")) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
