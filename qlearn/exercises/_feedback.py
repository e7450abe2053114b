"""The answer to a `check_...` call (truthy when right, shown as a message in a notebook),
and the one reader of numeric answers that every check shares."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch


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
    """A numeric answer as a finite float, or None when it is not one.

    Accepts every form a learner's computation may produce: int, float, a numpy scalar or
    0-d array, and a one-element tensor of any dtype (int64, float32, bfloat16, ...).
    Rejects bool (True is not a number of bits), strings, None, NaN and inf.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            return None
        value = value.detach().cpu().reshape(()).item()
    elif type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar or 0-d array -> Python scalar
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def as_int(value) -> int | None:
    """A numeric answer that is a whole number (8, 8.0, tensor(8)) as an int, or None."""
    number = as_number(value)
    return int(number) if number is not None and number == int(number) else None


def describe(value) -> str:
    """A short description of a learner's answer for a message: its repr, cut to one line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
