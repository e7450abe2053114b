"""Input checks shared by the weight methods' `quantize_weight` functions (clear ValueError / TypeError)."""

from __future__ import annotations

import torch

from ..core.validation import check_float_tensor


def check_weight(W) -> torch.Tensor:
    """Raise unless W is a finite, non-empty, 2-D float tensor (out, in)."""
    check_float_tensor(W, "W")
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D weight (out_features, in_features), got shape {tuple(W.shape)}")
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


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_group_size(group_size, in_features: int, name: str = "group_size", allow_none: bool = True):
    """Return `group_size` if it is None (when allowed) or a positive int that divides in_features."""
    if group_size is None and allow_none:
        return None
    check_positive_int(group_size, name)
    if in_features % group_size:
        raise ValueError(f"{name}={group_size} does not divide in_features={in_features}; pick a divisor of "
                         f"{in_features}" + (" or None (one scale per output row)" if allow_none else ""))
    return group_size


def check_number(value, name: str, low: float, low_inclusive: bool = True, high: float | None = None) -> float:
    """Return float(value) if it is a real number in the allowed interval, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok_low = value >= low if low_inclusive else value > low
    if not (ok_low and (high is None or value <= high)) or value != value:
        bound = f"{'>=' if low_inclusive else '>'} {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value
