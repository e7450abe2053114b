"""Exercises of notebook 03 (symmetric vs asymmetric). Each check returns a Feedback (truthy when right)."""

from __future__ import annotations

import math

import torch

from ..core.primitives import choose_qparams, dequantize, quantize
from ..teaching.sweep import roundtrip
from ..data.tensors import sample_tensor
from ._feedback import Feedback, right, wrong

# Exercises 1 and 2 use this tensor.
X_EX = torch.tensor([-0.6, -0.1, 0.0, 0.4, 1.8])


def _number(value):
    """value as a finite float, or None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def check_scale_zero_point(scale, zero_point) -> Feedback:
    """Exercise 1: the 8-bit asymmetric scale and zero point of X_EX, computed by hand."""
    s, z = _number(scale), _number(zero_point)
    if s is None or z is None:
        return wrong(f"answer with two numbers (replace the None), got scale={scale!r}, zero_point={zero_point!r}")
    qp = choose_qparams(X_EX, 8, symmetric=False)
    if not math.isclose(s, float(qp.scale), rel_tol=1e-3):
        return wrong(f"scale {s:.6g} is off. Hint: spread [min(x, 0), max(x, 0)] over qmax - qmin = 255 steps.")
    if z != round(z):
        return wrong("the zero point must be an integer code: round it.")
    if z != int(qp.zero_point):
        return wrong("the scale is right, the zero point is not. Hint: zero_point = qmin - round(lo / scale), qmin = -128.")
    return right(f"scale = (1.8 - (-0.6)) / 255 = {float(qp.scale):.6f}, zero_point = {int(qp.zero_point)}.")


def check_symmetric_code(scale, code) -> Feedback:
    """Exercise 2: 4-bit symmetric (restricted) scale of X_EX and the code that 0.4 gets."""
    s, c = _number(scale), _number(code)
    if s is None or c is None:
        return wrong(f"answer with two numbers (replace the None), got scale={scale!r}, code={code!r}")
    qp = choose_qparams(X_EX, 4, symmetric=True)
    want = int(quantize(X_EX, qp)[3])
    if not math.isclose(s, float(qp.scale), rel_tol=1e-3):
        return wrong(f"scale {s:.6g} is off. Hint: symmetric scale = max|x| / qmax, and qmax = 7 for 4 bits.")
    if c != want:
        return wrong("the scale is right, the code is not. Hint: code = round(0.4 / scale) (the zero point is 0).")
    back = float(dequantize(quantize(X_EX, qp), qp)[3])
    return right(f"scale = 1.8 / 7 = {float(qp.scale):.4f}; 0.4 -> code {want} -> {back:.4f} on the way back.")


def check_relu_ratio(ratio) -> Feedback:
    """Exercise 3: MSE(symmetric) / MSE(asymmetric) of the ReLU-like sample tensor at 4 bits, per tensor."""
    r = _number(ratio)
    if r is None:
        return wrong(f"answer with one number (replace the None), got {ratio!r}")
    x = sample_tensor("relu")
    want = roundtrip(x, 4, True)[1]["mse"] / roundtrip(x, 4, False)[1]["mse"]
    if math.isclose(r, want, rel_tol=0.01):
        return right(f"{want:.2f}. Symmetric leaves the negative codes unused: about half the levels, "
                     "about twice the step, about 4x the squared error.")
    if math.isclose(r, 1 / want, rel_tol=0.01):
        return wrong("you divided the other way round: symmetric MSE on top.")
    return wrong("use qlearn.teaching.sweep.roundtrip(x, 4, symmetric)[1]['mse'] for both schemes on sample_tensor('relu').")
