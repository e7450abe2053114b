"""Exercises of notebook 06 (quantization-aware training, observers)."""

from __future__ import annotations

import torch

from .. import metrics
from ..observers import OBSERVERS, make_observer
from ..primitives import QParams, fake_quantize
from ._feedback import Feedback, right, wrong


def outlier_tensor(seed: int = 0) -> torch.Tensor:
    """Exercise 2's tensor: 4,096 roughly normal values and a handful of large outliers. Shape (4096,)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, generator=gen)
    x[torch.randperm(4096, generator=gen)[:6]] = torch.tensor([14.0, -11.0, 17.0, 12.5, -15.0, 20.0])
    return x


def check_round_ste(fn_class) -> Feedback:
    """Exercise 1: a torch.autograd.Function whose forward is torch.round and whose backward passes
    the gradient straight through (d round(x) / dx taken as 1)."""
    if not (isinstance(fn_class, type) and issubclass(fn_class, torch.autograd.Function)):
        return wrong("pass the class itself, a subclass of torch.autograd.Function (e.g. RoundSTE)")
    x = torch.linspace(-3.2, 3.2, 33, requires_grad=True)  # includes .5 ties
    try:
        y = fn_class.apply(x)
    except Exception as e:  # the learner's code: report any error as feedback
        return wrong(f"calling {fn_class.__name__}.apply(x) raised {type(e).__name__}: {e}")
    if not isinstance(y, torch.Tensor) or y.shape != x.shape or not torch.equal(y.detach(), torch.round(x.detach())):
        return wrong("forward should return torch.round(x), same shape")
    weights = torch.arange(33, dtype=torch.float32)
    try:
        (y * weights).sum().backward()
    except Exception as e:
        return wrong(f"backward raised {type(e).__name__}: {e}")
    if x.grad is None or not torch.equal(x.grad, weights):
        return wrong("backward should return grad_output unchanged (the straight-through estimate); "
                     "autograd's own gradient of round is 0 everywhere, which would stop training")
    return right("forward rounds, backward lets the gradient through unchanged.")


def check_observer_choice(x: torch.Tensor, bits: int, answer: str) -> Feedback:
    """Exercise 2: the observer (by name) whose range gives `x` the lowest fake-quantization MSE."""
    if answer not in OBSERVERS:
        return wrong(f"answer with one of the names {sorted(OBSERVERS)}")
    errors = {name: metrics.mse(x, fake_quantize(x, qparams=make_observer(name, bits).observe(x).qparams()))
              for name in OBSERVERS}
    best = min(errors, key=errors.get)
    table = ", ".join(f"{n} {e:.3g}" for n, e in sorted(errors.items(), key=lambda kv: kv[1]))
    if errors[answer] <= errors[best] * (1 + 1e-9):
        return right(f"{answer} has the lowest MSE at {bits} bits ({table}).")
    return wrong(f"{answer} gives MSE {errors[answer]:.3g}; another observer does better. "
                 "Hint: min-max lets the outliers set the step; measure each with metrics.mse.")


def check_fake_quantize(fn, qparams: QParams) -> Feedback:
    """Exercise 3: fn(W, scale, zero_point, qmin, qmax) -> the dequantized weights of the source notes'
    loop, with the zero point added before clamping and the clamp that the notes leave out."""
    if not callable(fn):
        return wrong("pass your function itself")
    W = torch.randn(8, 16, generator=torch.Generator().manual_seed(6)) * 0.1
    W[0, 0] = 5.0  # far outside the range: must be clamped
    try:
        W_hat = fn(W, qparams.scale, qparams.zero_point, qparams.qmin, qparams.qmax)
    except Exception as e:
        return wrong(f"your function raised {type(e).__name__}: {e}")
    expected = fake_quantize(W, qparams=qparams)
    if not isinstance(W_hat, torch.Tensor) or W_hat.shape != W.shape:
        return wrong("return a tensor of the same shape as W")
    if torch.allclose(W_hat, expected, atol=1e-6):
        return right("quantize -> clamp -> dequantize matches qlearn.fake_quantize.")
    if torch.allclose(W_hat[1:], expected[1:], atol=1e-6):
        return wrong("all right except the outlier W[0, 0]: clamp the codes to [qmin, qmax] before dequantizing")
    return wrong("values differ. Hint: q = clamp(round(W / scale) + zero_point, qmin, qmax); "
                 "W_hat = scale * (q - zero_point)")
