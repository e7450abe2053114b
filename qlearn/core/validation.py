"""Every argument check of the package, in one place: clear ValueError / TypeError messages.

A public function checks its arguments once, at its edge, with these; private helpers trust their caller.
Each checker returns the (normalised) value, so a check reads `bits = check_bits(bits)`.

    check_bits(4)                                   an int in 2..8
    check_positive_int(n, "n")                      an int >= 1 (bool refused)
    check_number(x, "damp", low=0.0)                a finite real number in [low, high]
    check_choice(s, "grid", ("minmax", "mse"))      one of a fixed set of strings
    check_float_tensor(W, "W")                      a non-empty, finite float tensor
    check_weight(W); check_inputs(X, W, ...)        a weight (out, in) and its calibration inputs (tokens, in)
    check_group_size(g, in_features)                None or a positive divisor of in_features
    check_module(model)                             a torch.nn.Module
    check_names(names, model)                       a list of module names of the model
    check_float_dtype(dtype)                        a floating-point torch.dtype of 2 bytes or more
    check_codes(codes, "codes", high=15)            a uint8 tensor of codes 0..high
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MAX_BITS", "MIN_BITS", "WEIGHT_LIMIT", "check_bits", "check_bool", "check_choice", "check_codes",
           "check_float_dtype", "check_float_tensor", "check_group_size", "check_inputs", "check_module",
           "check_names", "check_number", "check_positive_int", "check_same_shape", "check_weight"]

MIN_BITS, MAX_BITS = 2, 8
# The largest weight magnitude a method accepts: scales and ranges are stored and computed in float32, and a
# range max - min of two values below this still fits float32 (largest finite value 3.4e38) with room to spare.
WEIGHT_LIMIT = torch.finfo(torch.float32).max / 4


def check_bits(bits, name: str = "bits") -> int:
    """Return `bits` if it is an int in MIN_BITS..MAX_BITS, else raise."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"{name} must be an int from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be from {MIN_BITS} to {MAX_BITS}, got {bits}")
    return bits


def check_bool(value, name: str) -> bool:
    """Return `value` if it is True or False (not 0, 1 or None), else raise TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return `value` if it is an int >= minimum (a bool is not an int here), else raise ValueError."""
    what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def check_number(value, name: str, low: float | None = None, low_inclusive: bool = True, high: float | None = None,
                 high_inclusive: bool = True) -> float:
    """Return float(value) if it is a finite real number in the interval, else raise.

    NaN and +-inf are always refused: no option of this package means anything at infinity.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not (
            isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high:g}")
    bound = " and ".join(parts)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{' ' + bound if bound else ''}, got {value}")
    ok = (low is None or (value >= low if low_inclusive else value > low)) and \
        (high is None or (value <= high if high_inclusive else value < high))
    if not ok:
        raise ValueError(f"{name} must be {bound}, got {value:g}")
    return value


def check_choice(value, name: str, choices) -> str:
    """Return `value` if it is one of `choices` (strings or None), else raise naming them."""
    choices = tuple(choices)
    if not (isinstance(value, str) or (value is None and None in choices)):
        raise TypeError(f"{name} must be one of {choices}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_module(model, name: str = "model") -> nn.Module:
    """Return `model` if it is a torch.nn.Module, else raise TypeError."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_names(names, model: nn.Module, name: str = "names") -> list[str]:
    """Return `names` as a list if it is a list (or other iterable, not a string) of module names of `model`."""
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise TypeError(f"{name} must be a list of module names such as ['model.layers.0.mlp.up_proj'], got "
                        f"{type(names).__name__} {names!r:.80}")
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{name} must hold module names (strings), got {names!r:.80}")
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"{name} must be module names of the model; unknown: {unknown[:5]}")
    return names


def check_float_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """Return `dtype` if it is a floating-point torch.dtype of 2 bytes or more (float32, float16, bfloat16, float64).

    The fp8 dtypes are refused: they hold codes (with a scale kept elsewhere), not values a layer computes in.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.itemsize == 1:
        raise TypeError(f"{name} must be a floating-point torch.dtype of 2 bytes or more (torch.float32, float16, "
                        f"bfloat16, float64), got {dtype!r}")
    return dtype


def check_codes(codes, name: str = "codes", high: int = 255) -> torch.Tensor:
    """Return `codes` if it is a uint8 tensor with every value in 0..high (the codes of a format), else raise."""
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
        got = codes.dtype if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise TypeError(f"{name} must be a uint8 tensor of codes 0..{high}, got {got}")
    if codes.numel() and int(codes.max()) > high:
        raise ValueError(f"{name} must hold codes 0..{high}, got a code {int(codes.max())}")
    return codes


def check_float_tensor(x, name: str = "x", allow_empty: bool = False) -> torch.Tensor:
    """Raise unless `x` is a non-empty floating-point tensor with only finite values (not on the meta device)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32, float16, bfloat16), got {x.dtype}")
    if x.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); it needs at least one element")
    if x.dtype.itemsize == 1:
        raise TypeError(f"{name} is {x.dtype}; cast fp8 tensors to float32 before quantizing")
    if x.is_meta:
        raise ValueError(f"{name} is on the meta device: it has no values (load real weights first)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; only finite values can be quantized")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names=("a", "b")) -> None:
    """Raise unless a and b are tensors of the same shape."""
    for t, n in zip((a, b), names):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{n} must be a torch.Tensor, got {type(t).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")


def check_weight(W, name: str = "W") -> torch.Tensor:
    """Raise unless W is a finite, non-empty, 2-D float tensor (out, in) with |W| <= WEIGHT_LIMIT (8.5e37)."""
    check_float_tensor(W, name)
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D weight (out_features, in_features), got shape {tuple(W.shape)}")
    largest = float(W.detach().abs().max())
    if largest > WEIGHT_LIMIT:
        raise ValueError(f"{name} holds values up to {largest:.3g}; weights beyond +-{WEIGHT_LIMIT:.2g} cannot be "
                         "quantized (scales and ranges are float32, and max - min would overflow)")
    return W


def check_inputs(X, W: torch.Tensor, required: bool, method: str):
    """Raise unless X is None (only when not `required`) or a finite, non-empty (tokens, in) float tensor."""
    if X is None:
        if required:
            raise ValueError(f"{method} needs calibration inputs X (tokens, {W.shape[1]}); got X=None")
        return None
    check_float_tensor(X, "X")
    if X.ndim != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"X must have shape (tokens, {W.shape[1]}) to match W {tuple(W.shape)}, got "
                         f"{tuple(X.shape)}; flatten batch and sequence dims with X.reshape(-1, {W.shape[1]})")
    return X


def check_group_size(group_size, in_features: int, name: str = "group_size", allow_none: bool = True):
    """Return `group_size` if it is None (when allowed) or a positive int that divides in_features."""
    if group_size is None and allow_none:
        return None
    check_positive_int(group_size, name)
    if in_features % group_size:
        raise ValueError(f"{name}={group_size} does not divide in_features={in_features}; pick a divisor of "
                         f"{in_features}" + (" or None (one scale per output row)" if allow_none else ""))
    return group_size
