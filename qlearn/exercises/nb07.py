"""Checks for the exercises of notebook 07 (pruning and distillation). Each returns a `Feedback`."""

from __future__ import annotations

import math

import torch

from ..compression.distill import soft_target_loss
from ..compression.prune import magnitude_prune
from ..compression.schedules import sparsity_schedule
from ._feedback import Feedback, Mistake, as_number, check_number, describe, right, wrong

__all__ = ["check_magnitude_prune", "check_schedule", "check_t_squared_ratio", "t_squared_example"]

_CASES = [((8, 8), 0.5), ((16, 4), 0.75), ((5, 7), 0.3), ((7, 3), 0.6), ((3, 3), 0.0), ((10, 10), 0.99)]


def check_magnitude_prune(fn) -> Feedback:
    """Exercise 1: fn(W, sparsity) must return a copy of W (W itself unchanged) with exactly
    floor(sparsity * W.numel()) entries, the smallest |w|, set to zero."""
    if not callable(fn):
        return wrong("pass your function itself, e.g. check_magnitude_prune(my_prune)")
    for i, (shape, s) in enumerate(_CASES):
        W = torch.randn(shape, generator=torch.Generator().manual_seed(100 + i))
        given = W.clone()
        try:
            got = fn(given, s)
        except Exception as err:  # a learner's bug is reported, not raised
            return wrong(f"your function raised {type(err).__name__}: {err} for W {tuple(shape)}, sparsity {s}")
        if not torch.equal(given, W):
            return wrong(f"your function changed the W it was given (W {tuple(shape)}, sparsity {s}); the exercise "
                         "asks for a copy: start from W.clone() and leave W as it was")
        if not isinstance(got, torch.Tensor) or got.shape != W.shape:
            return wrong(f"return a tensor of W's shape {tuple(shape)}, got {describe(got)}")
        if got.untyped_storage().data_ptr() == given.untyped_storage().data_ptr():
            return wrong(f"for W {tuple(shape)} at sparsity {s} you return W itself (or a view of it), "
                         "not a copy: start from W.clone()")
        k = math.floor(s * W.numel())
        zeros = int((got == 0).sum())
        if zeros != k:
            return wrong(f"for W {tuple(shape)} at sparsity {s} you zeroed {zeros} weights; "
                        f"floor({s} * {W.numel()}) = {k}")
        if not torch.equal(got, magnitude_prune(W, s)):
            return wrong(f"for W {tuple(shape)} at sparsity {s} you zeroed {k} weights, but not the "
                        "smallest in |w| (or you changed the weights you kept)")
    return right(f"your pruning matches qlearn's on {len(_CASES)} tensors.")


def t_squared_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded student and teacher logits for exercise 2. Shapes: (4, 10) each."""
    g = torch.Generator().manual_seed(7)
    return torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)


def _grad_norm(T: float) -> float:
    z_s, z_t = t_squared_example()
    z_s.requires_grad_(True)
    soft_target_loss(z_s, z_t, T, scale_by_T2=False).backward()
    return float(z_s.grad.norm())


def check_t_squared_ratio(ratio) -> Feedback:
    """Exercise 2: the gradient norm of the soft loss WITHOUT T^2 at T = 2, divided by the one at T = 8."""
    expected = _grad_norm(2.0) / _grad_norm(8.0)
    return check_number(
        ratio, expected, tolerance=1e-5 * expected,
        mistakes=[Mistake(expected / 16, f"got {expected / 16:.3g}; compute ||dL/dz_s|| at T = 2 and at T = 8 for "
                          "t_squared_example() and divide (did you keep the T^2 factor? pass scale_by_T2=False)"),
                  Mistake(1 / expected, f"got {1 / expected:.3g}; divide the norm at T = 2 by the one at T = 8")],
        right_message=f"the ratio is {expected:.1f}, close to (8 / 2)^2 = 16: without the T^2 factor, raising T from "
                      "2 to 8 makes the soft loss's gradient about 16 times weaker, so the hard-label term would take "
                      "over. Multiplying by T^2 undoes exactly that.",
        wrong_message=lambda got: f"got {got:.3g}; compute ||dL/dz_s|| at T = 2 and at T = 8 for t_squared_example() "
                                  "and divide",
        not_a_number=f"pass one number (a float or a one-element tensor), got {describe(ratio)}")


def check_schedule(fn) -> Feedback:
    """Exercise 3: fn(t, final_sparsity, n_steps) = Zhu & Gupta's cubic schedule from 0 (t0 = 0)."""
    if not callable(fn):
        return wrong("pass your function itself, e.g. check_schedule(my_schedule)")
    for s_f, n in ((0.9, 10), (0.5, 4), (0.8, 7)):
        for t in range(n + 1):
            try:
                answer = fn(t, s_f, n)
            except Exception as err:  # a learner's bug is reported, not raised
                return wrong(f"your function raised {type(err).__name__}: {err} at t={t}")
            got, want = as_number(answer), sparsity_schedule(t, s_f, n)
            if got is None:
                return wrong(f"at t={t} you return {describe(answer)}; return one number (a float or a "
                             "one-element tensor)")
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-7):  # float32 tensors round at ~1e-7
                return wrong(f"at t={t}, s_f={s_f}, n={n} you return {got:.6g}, expected {want:.6g}")
    return right("your schedule matches the cubic one: big pruning steps first, small ones at the end.")
