"""Exercises of notebook 09 (activation outliers: per-tensor scales, LLM.int8(), SmoothQuant).

Each check takes the tensors the notebook uses, computes the answer itself and compares. Answers may be
any number: int, float, numpy scalar or a one-element tensor.
"""

from __future__ import annotations

import torch

from ..core.validation import check_float_tensor
from ..methods.llm_int8 import check_threshold, outlier_columns
from ..methods.smoothquant import smoothing_factors
from ._feedback import Feedback, Mistake, check_number

__all__ = ["STEPS", "check_float_share", "check_smoothed_max", "check_starved_channels", "starved_channels",
           "top_codes"]

STEPS = 8  # exercise 1: channels whose largest int8 code is at most this one


def _activation(X) -> torch.Tensor:
    check_float_tensor(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be the activation (tokens, in), got shape {tuple(X.shape)}")
    return X.detach().float()


def top_codes(X: torch.Tensor) -> torch.Tensor:
    """The largest int8 code each channel of X reaches with one per-tensor scale, max|X| / 127. Shapes: (in,)."""
    X = _activation(X)
    scale = X.abs().max() / 127
    return (X.abs().amax(dim=0) / scale).round()  # (in,)


def starved_channels(X: torch.Tensor, steps: int = STEPS) -> int:
    """How many channels j never pass code `steps`: round(max_t |X_tj| / scale) <= steps, scale = max|X| / 127.
    The count section 2 of notebook 09 prints."""
    return int((top_codes(X) <= steps).sum())


def check_starved_channels(X: torch.Tensor, answer) -> Feedback:
    """Exercise 1: with one int8 scale for all of X, how many channels never pass code STEPS (their largest code,
    round(max_t |X_tj| / scale), is at most STEPS)?"""
    X = _activation(X)
    expected = starved_channels(X)
    scale = X.abs().max() / 127
    channel_max = X.abs().amax(dim=0)  # (in,)
    mistakes = [Mistake(int((channel_max < STEPS * scale).sum()),
                        f"you compared the unrounded max|x| with {STEPS} * scale; the codes are rounded, so a channel "
                        f"whose max is {STEPS}.4 steps still reaches only code {STEPS}: compare round(max / scale)"),
                Mistake(int((top_codes(X) < STEPS).sum()), f"you counted the channels that never reach code {STEPS}; "
                        f"the question counts those that never pass it (largest code <= {STEPS})"),
                Mistake(X.shape[1] - expected, "you counted the channels that do pass it; count those that don't"),
                Mistake(expected / X.shape[1], "that is the fraction of the channels; give their number")]
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected], count=True,
        right_message=f"{expected} of {X.shape[1]} channels never pass code {STEPS}: they are quantized with at most "
                      f"{2 * STEPS + 1} levels, fewer than 5 bits give, because a few outlier channels set the step.",
        wrong_message=lambda got: f"{got:g} channels is not it. Hint: scale = X.abs().max() / 127; each channel's "
                                  f"largest code is (X.abs().amax(dim=0) / scale).round(); count the codes <= {STEPS} "
                                  "with .sum().",
        not_a_number="answer with a number of channels (replace the None)")


def check_float_share(X: torch.Tensor, threshold, answer) -> Feedback:
    """Exercise 2: the fraction (0..1) of LLM.int8()'s multiply-adds done in float at `threshold` (the prompt asks
    for 3 significant digits)."""
    X = _activation(X)
    threshold = check_threshold(threshold)
    n = X.shape[1]
    k = int(outlier_columns(X, threshold).numel())
    expected = k / n
    mistakes = [Mistake(100 * expected, "that is a percentage: give the fraction (divide by 100)"),
                Mistake(int((X.abs() > threshold).sum()) / X.numel(), "that is the share of the *values* at or above "
                        "the threshold; LLM.int8() moves whole columns to float, so count the columns with any such "
                        "value"),
                Mistake(k, "that is the number of columns; give their share of all columns (a fraction)"),
                *(Mistake(c / n) for c in (k - 1, k + 1) if c >= 0)]  # one column more or fewer is not it
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected],
        right_message=f"{k} of {n} columns, {100 * expected:.1f} % of the multiply-adds, run in float; every token "
                      "needs them, so the share is the same for each token.",
        wrong_message="count the columns where any |X_tj| >= threshold; each output element sums over "
                      "all input columns, so those columns' share of the columns is their share of the work.",
        not_a_number="answer with a fraction between 0 and 1 (replace the None)")


def check_smoothed_max(X: torch.Tensor, W: torch.Tensor, answer, alpha: float = 0.5) -> Feedback:
    """Exercise 3: the largest |value| of X / s after SmoothQuant smoothing with `alpha` (the prompt asks for 3
    significant digits)."""
    X = _activation(X)
    s = smoothing_factors(X.abs().amax(dim=0), W, alpha)  # (in,)
    expected = float((X / s).abs().max())
    mistakes = [Mistake(float(X.abs().max()), "that is max|X| before smoothing: divide X by s first"),
                Mistake(float((X * s).abs().max()), "you multiplied X by s; SmoothQuant divides X by s (and "
                        "multiplies W by it)")]
    return check_number(
        answer, expected, tolerance=1e-5 * expected, mistakes=mistakes,
        right_message=f"max|X / s| = {expected:.3g}, down from {float(X.abs().max()):.3g}. At alpha = 0.5 each channel "
                      "of X / s and of W * s has the same maximum, sqrt(max|X_j| max|W_j|).",
        wrong_message="s = X.abs().amax(0) ** alpha / W.abs().amax(0) ** (1 - alpha), one per input "
                      "channel; divide X by s (broadcast over tokens) and take the max of the absolute value.",
        not_a_number="answer with a number (replace the None)")
