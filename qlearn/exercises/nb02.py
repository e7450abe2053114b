"""Exercises of notebook 02 (linear quantization)."""

from __future__ import annotations

import torch

from ..core.metrics import sqnr_db
from ..core.primitives import choose_qparams, dequantize, quantize
from ._feedback import Feedback, as_float64, as_int, as_number, check_number, describe, right, tensors_close, wrong

__all__ = ["check_dequantized", "check_min_bits", "check_scale_and_zero_point"]


def check_scale_and_zero_point(x: torch.Tensor, scale, zero_point, bits: int = 8) -> Feedback:
    """Exercise 1: asymmetric min-max scale and zero point of `x` (range including 0, signed codes)."""
    qp = choose_qparams(x, bits=bits, symmetric=False)
    s, z = float(qp.scale), int(qp.zero_point)
    answer_scale = scale
    scale, zero_point = as_number(scale), as_number(zero_point)
    if scale is None or zero_point is None:
        return wrong("answer with two numbers: scale and zero_point (replace the None)")
    scale_ok = check_number(answer_scale, s, tolerance=1e-6 * s, right_message="", not_a_number="",
                            wrong_message=f"scale {scale:.6g} is off. Hint: scale = (r_max - r_min) / (q_max - q_min) "
                                          f"with q_min = {qp.qmin}, q_max = {qp.qmax}.")
    if not scale_ok:
        return scale_ok
    if zero_point != z:
        return wrong(f"the scale is right ({s:.6g}) but zero_point {zero_point:g} is not. Hint: "
                     "z = round(q_min - r_min / scale), an integer.")
    return right(f"scale = {s:.6g}, zero_point = {z}.")


def check_dequantized(q: torch.Tensor, scale: float, zero_point: int, answer: torch.Tensor) -> Feedback:
    """Exercise 2: r = scale * (q - zero_point) for the given codes."""
    read = as_float64(answer) if isinstance(answer, torch.Tensor) else None  # the prompt asks for a tensor
    if read is None:
        return wrong(f"answer with a tensor, got {type(answer).__name__}")
    if not answer.is_floating_point():
        return wrong(f"your tensor has dtype {answer.dtype}: dequantized values are real numbers, "
                     "so compute in float (codes.float())")
    expected = scale * (q.double() - zero_point)
    if read[0].shape != expected.shape:
        return wrong(f"shape {tuple(read[0].shape)} should be {tuple(expected.shape)}")
    if tensors_close(answer, expected):
        return right("r = s (q - z), element by element.")
    return wrong("some values differ. Hint: subtract the zero point BEFORE multiplying by the scale, in float.")


def check_min_bits(x: torch.Tensor, target_db: float, answer) -> Feedback:
    """Exercise 3: the fewest bits (2..8) whose asymmetric per-tensor quantization of x reaches target_db SQNR."""
    bits = as_int(answer)
    if bits is None:
        return wrong(f"answer with a whole number of bits (such as 5), got {describe(answer)}")
    if not 2 <= bits <= 8:
        return wrong(f"{bits} bits is outside the widths this exercise searches: try every width from 2 to 8.")
    sqnr = {b: sqnr_db(x, dequantize(quantize(x, qp := choose_qparams(x, bits=b)), qp)) for b in range(2, 9)}
    enough = [b for b, v in sqnr.items() if v >= target_db]
    if not enough:
        return wrong(f"no bit width up to 8 reaches {target_db} dB")
    if bits == enough[0]:
        fewer = f"; {bits - 1} bits only {sqnr[bits - 1]:.1f} dB" if bits > 2 else ""
        return right(f"{bits} bits give {sqnr[bits]:.1f} dB{fewer}.")
    if sqnr[bits] < target_db:
        return wrong(f"{bits} bits give only {sqnr[bits]:.1f} dB < {target_db} dB.")
    return wrong(f"{bits} bits reach the target ({sqnr[bits]:.1f} dB), but fewer bits do too.")
