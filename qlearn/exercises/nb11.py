"""Exercises of notebook 11 (float block formats and rotations): the MX scale of a block, and kurtosis.

Each check takes the tensors the notebook uses, computes the answer itself and compares. Answers may be any
number: int, float, numpy scalar or a one-element tensor.
"""

from __future__ import annotations

import math

import torch

from ..core.validation import check_float_tensor
from ..methods import mx
from ._feedback import Feedback, Mistake, check_number

__all__ = ["check_kurtosis", "check_mx_exponent", "kurtosis", "mx_exponent"]


def _vector(x, name: str) -> torch.Tensor:
    check_float_tensor(x, name)
    if x.numel() < 2:
        raise ValueError(f"{name} needs at least 2 values, got {x.numel()}")
    return x.detach().double().flatten()


def mx_exponent(block: torch.Tensor) -> int:
    """k of the MX (E2M1) scale 2^k of one block: floor(log2(max |w|)) - 2, as mx.e8m0_scale stores it."""
    block = _vector(block, "block")
    return int(mx.e8m0_scale(block.abs().max().float(), mx.E2M1.emax)) - 127


def check_mx_exponent(block: torch.Tensor, answer) -> Feedback:
    """Exercise 1: the exponent k of the MXFP4 scale 2^k of `block` (32 weights)."""
    block = _vector(block, "block")
    expected = mx_exponent(block)
    amax = float(block.abs().max())
    mistakes = [Mistake(expected + 2, "that is floor(log2(amax)), the exponent of the block's largest weight: MX "
                        "subtracts emax of the element (2 for E2M1, whose largest value 6 = 1.5 * 2^2)"),
                Mistake(expected + 1, "round down: floor(log2(amax)), not round or ceil, and then subtract 2"),
                Mistake(expected + 127, "that is the stored E8M0 code; give the exponent k = code - 127"),
                Mistake(math.log2(amax / 6), "MX's scale is a power of two: take floor(log2(amax)) - 2, not "
                        "log2(amax / 6) (that is the float32 scale NVFP4 approximates)")]
    return check_number(
        answer, expected, count=True, mistakes=[m for m in mistakes if m.value != expected],
        right_message=f"k = {expected}: the block's largest |w| {amax:.4g} becomes {amax / 2.0 ** expected:.3g} "
                      f"in units of the scale, between 4 and 8: above 6 it is clipped to 6, below it the grid's top "
                      "is partly unused.",
        wrong_message="amax = block.abs().max(); k = floor(log2(amax)) - 2 (math.floor(math.log2(amax)) - 2).",
        not_a_number="answer with an integer exponent k (replace the None)")


def kurtosis(x: torch.Tensor) -> float:
    """Pearson's kurtosis E[(x - mean)^4] / var^2 (3 for a Gaussian; large when a few values dominate)."""
    x = _vector(x, "x")
    centered = x - x.mean()
    return float(centered.pow(4).mean() / centered.pow(2).mean() ** 2)


def check_kurtosis(x: torch.Tensor, answer) -> Feedback:
    """Exercise 2: the kurtosis of `x` (the prompt asks for 4 significant digits)."""
    x = _vector(x, "x")
    expected = kurtosis(x)
    mistakes = [Mistake(expected - 3, "that is the excess kurtosis (minus 3); the question asks for kurtosis itself"),
                Mistake(float(x.pow(4).mean() / x.pow(2).mean() ** 2) if float(x.mean()) != 0 else math.nan,
                        "center x first: subtract its mean")]
    return check_number(
        answer, expected, tolerance=1e-9 * abs(expected),
        mistakes=[m for m in mistakes if math.isfinite(m.value) and abs(m.value - expected) > 1e-4 * abs(expected)],
        right_message=f"kurtosis {expected:.3g} (a Gaussian has 3): the higher it is, the more a few values set the "
                      "scale and the rest lose their levels.",
        wrong_message="c = x - x.mean(); kurtosis = (c ** 4).mean() / ((c ** 2).mean()) ** 2.",
        not_a_number="answer with a number (replace the None)")
