"""The answer to a `check_...` call: truthy when right, shown as a message in a notebook."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feedback:
    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return ("Correct! " if self.ok else "Not yet: ") + self.message


def right(message: str) -> Feedback:
    return Feedback(True, message)


def wrong(message: str) -> Feedback:
    return Feedback(False, message)


def as_number(value) -> float | None:
    """An answer as a finite float: int, float, numpy scalar or 0-d array, 1-element tensor; else None."""
    import numbers
    import math

    if hasattr(value, "numel") and callable(value.numel) and value.numel() == 1:
        value = value.item()  # torch tensor
    elif hasattr(value, "ndim") and hasattr(value, "item") and getattr(value, "size", 0) == 1:
        value = value.item()  # numpy scalar or array with one element
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
