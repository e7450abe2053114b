"""Exercises of notebook 09 (activation outliers: per-tensor scales, LLM.int8(), SmoothQuant).

Each check takes the tensors the notebook uses, computes the answer itself and compares. Answers may be
any number: int, float, numpy scalar or a one-element tensor.
"""

from __future__ import annotations

import math

import torch

from ..core.validation import check_float_tensor
from ..methods.llm_int8 import check_threshold, outlier_columns
from ..methods.smoothquant import smoothing_factors
from ._feedback import Feedback, as_number, right, wrong

STEPS = 8  # exercise 1: channels whose largest value is below this many per-tensor steps


def _activation(X) -> torch.Tensor:
    check_float_tensor(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be the activation (tokens, in), got shape {tuple(X.shape)}")
    return X.detach().float()


def starved_channels(X: torch.Tensor, steps: int = STEPS) -> int:
    """How many channels j have max_t |X_tj| < steps * scale, with the per-tensor scale = max|X| / 127."""
    X = _activation(X)
    scale = X.abs().max() / 127
    return int((X.abs().amax(dim=0) < steps * scale).sum())


def check_starved_channels(X: torch.Tensor, answer) -> Feedback:
    """Exercise 1: with one int8 scale for all of X, how many channels stay below STEPS steps?"""
    n = as_number(answer)
    if n is None:
        return wrong("answer with a number of channels (replace the None)")
    expected = starved_channels(X)
    if n == expected:
        return right(f"{expected} of {X.shape[1]} channels never get past code {STEPS}: they are quantized with "
                     "fewer than 4 bits' worth of levels, because a few outlier channels set the step.")
    return wrong("not that many. Hint: scale = X.abs().max() / 127, then compare each channel's max, "
                 f"X.abs().amax(dim=0), with {STEPS} * scale and count with .sum().")


def check_float_share(X: torch.Tensor, threshold, answer) -> Feedback:
    """Exercise 2: the fraction (0..1) of LLM.int8()'s multiply-adds done in float at `threshold`."""
    X = _activation(X)
    threshold = check_threshold(threshold)
    share = as_number(answer)
    if share is None:
        return wrong("answer with a fraction between 0 and 1 (replace the None)")
    k = int(outlier_columns(X, threshold).numel())
    expected = k / X.shape[1]
    if math.isclose(share, expected, rel_tol=1e-6, abs_tol=1e-9):
        return right(f"{k} of {X.shape[1]} columns, {100 * expected:.1f} % of the multiply-adds, run in float; "
                     "every token needs them, so the share is the same for each token.")
    if expected and math.isclose(share, 100 * expected, rel_tol=1e-6):
        return wrong("that is a percentage: give the fraction (divide by 100)")
    return wrong("not yet. Hint: count the columns where any |X_tj| >= threshold; each output element sums over "
                 "all input columns, so those columns' share of the columns is their share of the work.")


def check_smoothed_max(X: torch.Tensor, W: torch.Tensor, answer, alpha: float = 0.5) -> Feedback:
    """Exercise 3: the largest |value| of X / s after SmoothQuant smoothing with `alpha`."""
    X = _activation(X)
    got = as_number(answer)
    if got is None:
        return wrong("answer with a number (replace the None)")
    s = smoothing_factors(X.abs().amax(dim=0), W, alpha)  # (in,)
    expected = float((X / s).abs().max())
    if math.isclose(got, expected, rel_tol=1e-3):
        return right(f"max|X / s| = {expected:.3g}, down from {float(X.abs().max()):.3g}. At alpha = 0.5 each channel "
                     "of X / s and of W * s has the same maximum, sqrt(max|X_j| max|W_j|).")
    return wrong("not yet. Hint: s = X.abs().amax(0) ** alpha / W.abs().amax(0) ** (1 - alpha), one per input "
                 "channel; divide X by s (broadcast over tokens) and take the max of the absolute value.")
