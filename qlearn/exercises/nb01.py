"""Exercises of notebook 01 (dtypes and casting)."""

from __future__ import annotations

import torch

from ..core.dtypes import FLOAT_DTYPES, float_info, model_memory_bytes
from ._feedback import Feedback, Mistake, as_number, check_number, describe, right, wrong

__all__ = ["check_machine_epsilon", "check_memory_bytes", "check_smallest_safe_dtype"]


def check_memory_bytes(model: torch.nn.Module, answer) -> Feedback:
    """Exercise 1: the bytes of `model`'s parameters and buffers if cast to bfloat16."""
    number = as_number(answer)
    if number is None:
        return wrong(f"answer with a number of bytes (an int, a float or a one-element tensor), got {describe(answer)}")
    expected = model_memory_bytes(model, torch.bfloat16)
    if number == expected:
        return right(f"{expected:,} bytes: every float tensor costs 2 bytes per element, integer buffers keep theirs.")
    if number == model_memory_bytes(model, torch.float32):
        return wrong(f"{number:,.0f} bytes is the model as it is now (float32, 4 bytes per element). "
                     "Count 2 bytes per element for the floating-point tensors.")
    return wrong(f"{number:,.0f} bytes is off by {number - expected:+,.0f}. Hint: count numel() x bytes per element "
                 "for parameters AND buffers; only floating-point tensors change size.")


def check_smallest_safe_dtype(value: float, answer) -> Feedback:
    """Exercise 2: the format with the fewest bytes that stores `value` without overflowing to inf
    (ties broken by precision: more mantissa bits wins)."""
    if isinstance(answer, torch.dtype):
        answer = next((n for n, d in FLOAT_DTYPES.items() if d == answer), str(answer))
    if not isinstance(answer, str) or answer not in FLOAT_DTYPES:
        return wrong(f"answer with one of {list(FLOAT_DTYPES)}, got {describe(answer)}")
    fits = [float_info(n) for n in FLOAT_DTYPES if abs(value) <= float_info(n).max]
    best = min(fits, key=lambda i: (i.bytes, -i.mantissa_bits))
    if answer == best.name:
        return right(f"{best.name} ({best.bytes} bytes, max {best.max:.4g}) holds {value:g}.")
    info = float_info(answer)
    if abs(value) > info.max:
        return wrong(f"{answer} overflows: its largest value is {info.max:.4g} < {abs(value):g}.")
    return wrong(f"{answer} works but is not the cheapest / most precise choice that fits.")


def check_machine_epsilon(dtype_name: str, answer) -> Feedback:
    """Exercise 3: the gap between 1.0 and the next representable number in `dtype_name`."""
    info = float_info(dtype_name)
    others = {float_info(n).eps: n for n in FLOAT_DTYPES if float_info(n).eps != info.eps}
    return check_number(
        answer, info.eps,
        mistakes=[Mistake(1 + info.eps, f"{1 + info.eps:g} is the next number itself; the question asks for the gap: "
                          "subtract 1.0."),
                  *(Mistake(eps, f"{eps:g} is the eps of {name}, not of {dtype_name}")
                    for eps, name in others.items())],
        right_message=f"eps = 2^-{info.mantissa_bits} = {info.eps:g} for {dtype_name}.",
        wrong_message=lambda got: f"{got:g} is not it. Hint: with m mantissa bits, the number after 1.0 is 1 + 2^-m.",
        not_a_number=f"answer with a number (a float or a one-element tensor), got {describe(answer)}")
