"""Exercises of notebook 02 (linear quantization)."""

from __future__ import annotations

import torch

from ..core.primitives import choose_qparams, dequantize, quantize
from ..core.metrics import sqnr_db
from ._feedback import Feedback, right, wrong


def check_scale_and_zero_point(x: torch.Tensor, scale, zero_point, bits: int = 8) -> Feedback:
    """Exercise 1: asymmetric min-max scale and zero point of `x` (range including 0, signed codes)."""
    qp = choose_qparams(x, bits=bits, symmetric=False)
    s, z = float(qp.scale), int(qp.zero_point)
    try:
        scale, zero_point = float(scale), float(zero_point)
    except (TypeError, ValueError):
        return wrong("answer with two numbers: scale and zero_point")
    if abs(scale - s) > 1e-6 * s:
        return wrong(f"scale {scale:.6g} is off. Hint: scale = (r_max - r_min) / (q_max - q_min) with "
                     f"q_min = {qp.qmin}, q_max = {qp.qmax}.")
    if zero_point != z:
        return wrong(f"the scale is right ({s:.6g}) but zero_point {zero_point:g} is not. Hint: "
                     "z = round(q_min - r_min / scale), an integer.")
    return right(f"scale = {s:.6g}, zero_point = {z}.")


def check_dequantized(q: torch.Tensor, scale: float, zero_point: int, answer: torch.Tensor) -> Feedback:
    """Exercise 2: r = scale * (q - zero_point) for the given codes."""
    if not isinstance(answer, torch.Tensor):
        return wrong(f"answer with a tensor, got {type(answer).__name__}")
    expected = scale * (q.float() - zero_point)
    if answer.shape != expected.shape:
        return wrong(f"shape {tuple(answer.shape)} should be {tuple(expected.shape)}")
    if torch.allclose(answer.float(), expected, rtol=1e-6, atol=1e-7):
        return right("r = s (q - z), element by element.")
    return wrong("some values differ. Hint: subtract the zero point BEFORE multiplying by the scale, in float.")


def check_min_bits(x: torch.Tensor, target_db: float, answer) -> Feedback:
    """Exercise 3: the fewest bits (2..8) whose asymmetric per-tensor quantization of x reaches target_db SQNR."""
    sqnr = {b: sqnr_db(x, dequantize(quantize(x, qp := choose_qparams(x, bits=b)), qp)) for b in range(2, 9)}
    enough = [b for b, v in sqnr.items() if v >= target_db]
    if isinstance(answer, bool) or not isinstance(answer, int):
        return wrong(f"answer with an int number of bits, got {answer!r}")
    if not enough:
        return wrong(f"no bit width up to 8 reaches {target_db} dB")
    if answer == enough[0]:
        fewer = f"; {answer - 1} bits only {sqnr[answer - 1]:.1f} dB" if answer > 2 else ""
        return right(f"{answer} bits give {sqnr[answer]:.1f} dB{fewer}.")
    if answer in sqnr and sqnr[answer] < target_db:
        return wrong(f"{answer} bits give only {sqnr[answer]:.1f} dB < {target_db} dB.")
    return wrong(f"{answer} bits reach the target, but fewer bits do too.")
