"""The answer to a `check_...` call (truthy when right, shown as a message in a notebook), and the course's one
policy for judging answers, written once here and used by every notebook's checks.

The policy:
- A number is accepted when the precision it is given at pins it to the right value and to no known mistake.
  An answer stands for every value that rounds to it: 4.064 for [4.06345, 4.06455] (half a unit of its last
  digit, plus a tenth for an answer rounded twice, 4.06353 -> 4.0635 -> 4.064); a bfloat16 or float32 tensor for a
  few steps of its dtype around it. So an answer rounded to the precision the prompt shows is right, a coarser one
  that could also be a mistake is asked for more digits, and one that only fits a mistake gets that mistake's hint.
- Every numeric form a computation may produce is read: int, float, numpy scalars and 0-d arrays, one-element
  tensors of any float or integer dtype. bool, str, None, NaN and inf are not numbers.
- A tensor answer (or what a learner's function returns) is read as float64, from a tensor of any float dtype,
  a numpy array or a (nested) list, and compared in float64 with a tolerance set by the dtype the learner computed
  in, relative to the size of the numbers involved, so that float32 rounding (the 1e-7 a reference-code form such
  as `W[:, j:] -= err[:, None] * U[j, j:]` leaves behind) passes and a different formula does not.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Sequence

import torch

__all__ = ["DTYPE_STEPS", "ROUNDED_TWICE", "TENSOR_RTOL", "Feedback", "Mistake", "Reading", "as_float64", "as_int",
           "as_number", "check_number", "describe", "digits_needed", "read_number", "right", "tensors_close", "wrong"]

# How many steps of its own dtype a float answer may be off: its own rounding to that dtype, and a little more.
DTYPE_STEPS = 1
# Relative tolerance of a tensor comparison, by the dtype the learner's result has (float64 results usually come
# from float32 inputs, so they get float32's).
TENSOR_RTOL = {torch.float64: 1e-5, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
ROUNDED_TWICE = 1.1  # an answer rounded twice is off by at most 0.55 units of its last digit, not 0.5


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


def describe(value) -> str:
    """A short description of a learner's answer for a message: its repr, cut to one line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """A numeric answer as a float, and the half-width of the values it stands for (0 for an exact integer)."""

    value: float
    halfwidth: float
    dtype: str  # "int", "float64", "float32", "bfloat16", ...


def _shortest_digits(value: float, dtype: torch.dtype) -> str:
    """The shortest decimal string that turns back into `value` in `dtype` (as repr does for float64)."""
    if dtype == torch.float64:
        return repr(value)
    for digits in range(1, 18):
        text = f"{value:.{digits}g}"
        if float(torch.tensor(float(text), dtype=dtype)) == value:
            return text
    return repr(value)


def read_number(answer) -> Reading | None:
    """A numeric answer with the precision it carries, or None when it is not a finite number.

    Accepts int, float, numpy scalars and 0-d arrays, and one-element tensors of any int or float dtype.
    A float answer stands for the values that round to it: half a unit of the last digit it shows (times 1.1, for an
    answer rounded twice), and at least DTYPE_STEPS steps of its dtype (float32, bfloat16, ...) around it.
    """
    dtype = torch.float64
    if isinstance(answer, torch.Tensor):
        if answer.numel() != 1 or answer.dtype == torch.bool or answer.is_complex():
            return None
        dtype = answer.dtype
        answer = answer.detach().cpu().reshape(()).item()
    elif type(answer).__module__ == "numpy" and getattr(answer, "shape", None) == ():
        numpy_dtype = str(answer.dtype)
        dtype = {"float32": torch.float32, "float16": torch.float16}.get(numpy_dtype, torch.float64)
        answer = answer.item()  # numpy scalar or 0-d array -> Python scalar
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return None
    if isinstance(answer, numbers.Integral):
        return Reading(float(answer), 0.0, "int")
    value = float(answer)
    if not math.isfinite(value):
        return None
    exponent = Decimal(_shortest_digits(value, dtype)).as_tuple().exponent
    shown = 0.5 * ROUNDED_TWICE * 10.0 ** exponent  # half a unit of the last digit shown
    steps = DTYPE_STEPS * torch.finfo(dtype).eps * abs(value)
    return Reading(value, max(shown, steps), str(dtype).removeprefix("torch."))


def as_number(value) -> float | None:
    """A numeric answer as a finite float, or None when it is not one (see read_number for the forms)."""
    reading = read_number(value)
    return None if reading is None else reading.value


def as_int(value) -> int | None:
    """A numeric answer that is a whole number (8, 8.0, tensor(8)) as an int, or None."""
    number = as_number(value)
    return int(number) if number is not None and number == int(number) else None


def _fits(reading: Reading, value: float, tolerance: float) -> bool:
    return abs(reading.value - value) <= reading.halfwidth + tolerance


def digits_needed(expected: float, others: Sequence[float], tolerance: float = 0.0) -> int:
    """The fewest significant digits at which `expected`, rounded, stands for no value in `others`."""
    for digits in range(1, 16):
        text = f"{expected:#.{digits}g}"  # '#' keeps the trailing zeros: 4.00 stands for [3.9945, 4.0055]
        halfwidth = 0.5 * ROUNDED_TWICE * 10.0 ** Decimal(text).as_tuple().exponent
        if all(abs(float(text) - other) > halfwidth + tolerance for other in others):
            return digits
    return 16


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer and what to tell the learner who gives it (None: no special hint)."""

    value: float
    hint: str | None = None


Message = str | Callable[[float], str]


def _say(message: Message, value: float) -> str:
    return message(value) if callable(message) else message


def check_number(answer, expected: float, *, right_message: Message, wrong_message: Message,
                 not_a_number: str, mistakes: Sequence[Mistake] = (), tolerance: float = 0.0,
                 count: bool = False) -> Feedback:
    """Judge a numeric answer by the course's policy (see the module docstring).

    `expected` is the right value, `tolerance` how far off the checker's own computation of it may be (0 for an
    exact count; about 1e-5 * |expected| for a value computed in float32). `mistakes` are the known wrong answers.
    A message may be a string or a function of the answer's value. `count=True` marks an exact whole number (a
    count of bytes, channels, parameters): the answer must equal it, in whatever dtype it comes.
    """
    reading = read_number(answer)
    if reading is None:
        return wrong(not_a_number)
    if count:
        reading = Reading(reading.value, 0.0, reading.dtype)  # a count is exact, whatever holds it
        dtype = getattr(torch, reading.dtype, None)
        if reading.value != expected and isinstance(dtype, torch.dtype) and dtype.is_floating_point \
                and float(torch.tensor(float(expected), dtype=dtype)) == reading.value:
            return wrong(f"a {reading.dtype} cannot hold {expected:g} (it stores {reading.value:g}): answer with an "
                         "int or a float32/float64 number")
    value = reading.value
    fits_right = _fits(reading, expected, tolerance)
    fitting = [m for m in mistakes if _fits(reading, m.value, tolerance)]
    if fits_right and not fitting:
        return right(_say(right_message, value))
    if fits_right:
        digits = digits_needed(expected, [m.value for m in mistakes], tolerance)
        if value and reading.halfwidth:  # an answer that has that many digits but rounds the other way: one more
            last_digit = math.floor(math.log10(reading.halfwidth / (0.5 * ROUNDED_TWICE)))  # 10^this is its unit
            shown = math.floor(math.log10(abs(value))) - last_digit + 1
            digits = max(digits, shown + 1)
        carrier = "" if reading.dtype in ("int", "float64") else f" (a {reading.dtype} holds only so many digits)"
        return wrong(f"{value:g} is too coarse to tell the right answer from a mistake{carrier}: give "
                     f"{digits} significant digits.")
    hints = list(dict.fromkeys(m.hint for m in fitting if m.hint))  # each once, in order
    return wrong("; or ".join(hints) if hints else _say(wrong_message, value))


# ---------------------------------------------------------------------------------------------------------------
# Tensors and functions
# ---------------------------------------------------------------------------------------------------------------

def as_float64(answer) -> tuple[torch.Tensor, torch.dtype] | None:
    """A tensor answer as a float64 tensor, with the dtype it was computed in, or None when it is not numeric.

    Accepts tensors of any real dtype, numpy arrays and (nested) lists or tuples of numbers.
    """
    if isinstance(answer, torch.Tensor):
        if answer.dtype == torch.bool or answer.is_complex():
            return None
        dtype = answer.dtype if answer.is_floating_point() else torch.float64
        return answer.detach().cpu().to(torch.float64), dtype
    if type(answer).__module__ == "numpy" or isinstance(answer, (list, tuple)):
        try:
            tensor = torch.as_tensor(answer)
        except (TypeError, ValueError, RuntimeError):
            return None
        return as_float64(tensor) if tensor.dtype != torch.bool else None
    return None


def tensors_close(answer, want: torch.Tensor, *, scale: float | None = None) -> bool:
    """Whether a tensor answer equals `want` up to the rounding of the dtype it was computed in.

    Compared in float64: |answer - want| <= rtol * (|want| + scale) elementwise, with rtol = TENSOR_RTOL[dtype] and
    scale = max|want| unless given (the size of the terms the answer was summed from). Shapes must match.
    """
    read = as_float64(answer)
    if read is None:
        return False
    got, dtype = read
    want = want.detach().cpu().to(torch.float64)
    if got.shape != want.shape:
        return False
    if not torch.isfinite(got).all():
        return False
    rtol = TENSOR_RTOL.get(dtype, TENSOR_RTOL[torch.float32])
    scale = float(want.abs().max()) if scale is None and want.numel() else (scale or 0.0)
    return bool(((got - want).abs() <= rtol * (want.abs() + scale)).all())
