"""Exercises of notebook 03 (symmetric vs asymmetric). Each check returns a Feedback (truthy when right)."""

from __future__ import annotations

import torch

from ..core.primitives import choose_qparams, dequantize, quantize
from ..data.tensors import sample_tensor
from ..teaching.sweep import roundtrip
from ._feedback import Feedback, Mistake, as_number, check_number, describe, right, wrong

__all__ = ["X_EX", "check_relu_ratio", "check_scale_zero_point", "check_symmetric_code"]

# Exercises 1 and 2 use this tensor.
X_EX = torch.tensor([-0.6, -0.1, 0.0, 0.4, 1.8])


def check_scale_zero_point(scale, zero_point) -> Feedback:
    """Exercise 1: the 8-bit asymmetric scale and zero point of X_EX, computed by hand."""
    s, z = as_number(scale), as_number(zero_point)
    if s is None or z is None:
        return wrong(f"answer with two numbers (replace the None), got scale={describe(scale)}, "
                     f"zero_point={describe(zero_point)}")
    qp = choose_qparams(X_EX, 8, symmetric=False)
    scale_ok = check_number(scale, float(qp.scale), tolerance=1e-6 * float(qp.scale), right_message="", not_a_number="",
                            wrong_message=f"scale {s:.6g} is off. Hint: spread [min(x, 0), max(x, 0)] over qmax - qmin "
                                          "= 255 steps.")
    if not scale_ok:
        return scale_ok
    if z != round(z):
        return wrong("the zero point must be an integer code: round it.")
    if z != int(qp.zero_point):
        return wrong("the scale is right, the zero point is not. Hint: zero_point = qmin - round(lo / scale), "
                     "qmin = -128.")
    return right(f"scale = (1.8 - (-0.6)) / 255 = {float(qp.scale):.6f}, zero_point = {int(qp.zero_point)}.")


def check_symmetric_code(scale, code) -> Feedback:
    """Exercise 2: 4-bit symmetric (restricted) scale of X_EX and the code that 0.4 gets."""
    s, c = as_number(scale), as_number(code)
    if s is None or c is None:
        return wrong(f"answer with two numbers (replace the None), got scale={describe(scale)}, code={describe(code)}")
    qp = choose_qparams(X_EX, 4, symmetric=True)
    want = int(quantize(X_EX, qp)[3])
    scale_ok = check_number(scale, float(qp.scale), tolerance=1e-6 * float(qp.scale), right_message="", not_a_number="",
                            wrong_message=f"scale {s:.6g} is off. Hint: symmetric scale = max|x| / qmax, and qmax = 7 "
                                          "for 4 bits.")
    if not scale_ok:
        return scale_ok
    if c != want:
        return wrong("the scale is right, the code is not. Hint: code = round(0.4 / scale) (the zero point is 0).")
    back = float(dequantize(quantize(X_EX, qp), qp)[3])
    return right(f"scale = 1.8 / 7 = {float(qp.scale):.4f}; 0.4 -> code {want} -> {back:.4f} on the way back.")


def check_relu_ratio(ratio) -> Feedback:
    """Exercise 3: MSE(symmetric) / MSE(asymmetric) of the ReLU-like sample tensor at 4 bits, per tensor."""
    x = sample_tensor("relu")
    want, at_8 = (roundtrip(x, b, True)[1]["mse"] / roundtrip(x, b, False)[1]["mse"] for b in (4, 8))
    closer = "closer to" if abs(want - 4) < abs(at_8 - 4) else "further from"
    return check_number(
        ratio, want, tolerance=1e-5 * want,
        mistakes=[Mistake(1 / want, "you divided the other way round: symmetric MSE on top."),
                  Mistake(at_8, "that is the ratio at 8 bits; the exercise asks for 4 bits.")],
        right_message=f"{want:.2f} at 4 bits, {closer} 4 than the {at_8:.2f} of 8 bits. Symmetric leaves the negative "
                      "codes unused, so its step is about twice as large and its squared error about 4x. Not exactly "
                      "2x: on [0, max] the asymmetric scheme has 2^b - 1 steps, the symmetric one only "
                      f"2^(b-1) - 1, so the step ratio is 15 / 7 at 4 bits (squared: {(15 / 7) ** 2:.2f}) and "
                      f"255 / 127 at 8 bits (squared: {(255 / 127) ** 2:.2f}). The fewer the bits, the more the "
                      "one lost level counts.",
        wrong_message="use qlearn.teaching.sweep.roundtrip(x, 4, symmetric)[1]['mse'] for both schemes on "
                      "sample_tensor('relu').",
        not_a_number=f"answer with one number (replace the None), got {describe(ratio)}")
