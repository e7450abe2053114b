"""Exercises of notebook 03 (symmetric vs asymmetric). Each check prints whether the answer is right."""

from __future__ import annotations

import math

import torch

from ..primitives import choose_qparams, dequantize, quantize
from ..sweep import roundtrip
from ..tensors import sample_tensor

# Exercise 1 and 2 use this tensor.
X_EX = torch.tensor([-0.6, -0.1, 0.0, 0.4, 1.8])


def _number(value, name):
    if value is None:
        print(f"Not answered yet: replace None with your {name}.")
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        print(f"Not yet: {name} must be a finite number, got {value!r}.")
        return None
    return float(value)


def check_scale_zero_point(scale, zero_point) -> None:
    """Exercise 1: the 8-bit asymmetric scale and zero point of X_EX, computed by hand."""
    s = _number(scale, "scale")
    z = None if s is None else _number(zero_point, "zero point")
    if z is None:
        return
    qp = choose_qparams(X_EX, 8, symmetric=False)
    s_ok = math.isclose(s, float(qp.scale), rel_tol=1e-3)
    z_ok = z == int(qp.zero_point)
    if s_ok and z_ok:
        print(f"Correct: scale = (1.8 - (-0.6)) / 255 = {float(qp.scale):.6f}, zero_point = {int(qp.zero_point)}.")
    elif not s_ok:
        print("Not yet: the scale spreads the range [min(x, 0), max(x, 0)] over qmax - qmin = 255 steps.")
    elif z != round(z):
        print("Not yet: the zero point must be an integer code: round it.")
    else:
        print("Not yet: zero_point = qmin - round(lo / scale) with qmin = -128 and lo = min(x).")


def check_symmetric_code(scale, code) -> None:
    """Exercise 2: 4-bit symmetric (restricted) scale of X_EX and the code that 0.4 gets."""
    s = _number(scale, "scale")
    c = None if s is None else _number(code, "code")
    if c is None:
        return
    qp = choose_qparams(X_EX, 4, symmetric=True)
    want = int(quantize(X_EX, qp)[3])
    if not math.isclose(s, float(qp.scale), rel_tol=1e-3):
        print("Not yet: symmetric scale = max|x| / qmax, and qmax = 7 for 4 bits.")
    elif c != want:
        print("Not yet: code = round(0.4 / scale) (the zero point is 0); keep it inside -8..7.")
    else:
        back = float(dequantize(quantize(X_EX, qp), qp)[3])
        print(f"Correct: scale = 1.8 / 7 = {float(qp.scale):.4f}, 0.4 -> code {want} -> {back:.4f} on the way back.")


def check_relu_ratio(ratio) -> None:
    """Exercise 3: MSE(symmetric) / MSE(asymmetric) of the ReLU-like sample tensor at 4 bits, per tensor."""
    r = _number(ratio, "ratio")
    if r is None:
        return
    x = sample_tensor("relu")
    want = roundtrip(x, 4, True)[1]["mse"] / roundtrip(x, 4, False)[1]["mse"]
    if math.isclose(r, want, rel_tol=0.01):
        print(f"Correct: {want:.2f}. Symmetric leaves the negative codes unused: about half the levels, "
              "about twice the step, about 4x the squared error.")
    elif math.isclose(r, 1 / want, rel_tol=0.01):
        print("Not yet: you divided the other way round: symmetric MSE on top.")
    else:
        print("Not yet: use qlearn.sweep.roundtrip(x, 4, symmetric)[1]['mse'] for both schemes on "
              "sample_tensor('relu').")
