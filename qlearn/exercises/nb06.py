"""Exercises of notebook 06 (quantization-aware training, observers)."""

from __future__ import annotations

import torch

from ..core import metrics
from ..core.primitives import fake_quantize
from ..training.observers import OBSERVERS, make_observer
from ._feedback import Feedback, as_float64, describe, right, tensors_close, wrong

__all__ = ["check_lsq_init", "check_observer_choice", "check_round_ste", "outlier_tensor"]


def outlier_tensor(seed: int = 0) -> torch.Tensor:
    """Exercise 2's tensor: 4,096 roughly normal values and a handful of large outliers. Shape (4096,)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, generator=gen)
    x[torch.randperm(4096, generator=gen)[:6]] = torch.tensor([14.0, -11.0, 17.0, 12.5, -15.0, 20.0])
    return x


def check_round_ste(fn_class) -> Feedback:
    """Exercise 1: a torch.autograd.Function whose forward is torch.round and whose backward passes
    the gradient straight through (d round(x) / dx taken as 1). The test input includes the ties
    -2.5 ... 2.5, where torch.round rounds half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2)."""
    if not (isinstance(fn_class, type) and issubclass(fn_class, torch.autograd.Function)):
        return wrong("pass the class itself, a subclass of torch.autograd.Function (e.g. RoundSTE)")
    ties = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    x = torch.cat([torch.linspace(-3.2, 3.2, 33), ties]).requires_grad_(True)  # (39,)
    try:
        y = fn_class.apply(x)
    except Exception as e:  # the learner's code: report any error as feedback
        return wrong(f"calling {fn_class.__name__}.apply(x) raised {type(e).__name__}: {e}")
    if not isinstance(y, torch.Tensor):
        return wrong(f"forward returned {describe(y)} ({type(y).__name__}); return a tensor of x's shape: "
                     "torch.round(x)")
    if not y.is_floating_point():
        return wrong(f"forward returned a {y.dtype} tensor. Keep x's float dtype (torch.round(x), no .int() or "
                     ".long()): gradients only flow through floating-point tensors, so backward would never run.")
    if y.shape != x.shape:
        return wrong(f"forward returned shape {tuple(y.shape)}; it should keep x's shape {tuple(x.shape)}")
    x0, y0 = x.detach(), y.detach()
    if not torch.equal(y0, torch.round(x0)):
        if torch.equal(y0, torch.floor(x0 + 0.5)):
            return wrong("forward rounds ties up (floor(x + 0.5) gives 0.5 -> 1, 2.5 -> 3); torch.round rounds "
                         "half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2). Use torch.round(x).")
        if torch.equal(y0, x0):
            return wrong("forward returns x unchanged; it should return torch.round(x)")
        return wrong("forward should return torch.round(x), same shape")
    weights = torch.arange(x.numel(), dtype=torch.float32)
    try:
        (y * weights).sum().backward()
    except Exception as e:
        return wrong(f"forward is right, but backward raised {type(e).__name__}: {e}")
    if x.grad is None or not torch.equal(x.grad, weights):
        return wrong("forward is right; backward should return grad_output unchanged (the straight-through "
                     "estimate). Autograd's own gradient of round is 0 everywhere, which would stop training")
    return right("forward rounds (half to even, as torch.round), backward lets the gradient through unchanged.")


def check_observer_choice(x: torch.Tensor, bits: int, answer: str) -> Feedback:
    """Exercise 2: the observer (by name) whose range gives `x` the lowest fake-quantization MSE."""
    if not isinstance(answer, str) or answer not in OBSERVERS:
        return wrong(f"answer with one of the names {sorted(OBSERVERS)}, got {describe(answer)}")
    errors = {name: metrics.mse(x, fake_quantize(x, qparams=make_observer(name, bits).observe(x).qparams()))
              for name in OBSERVERS}
    best = min(errors, key=errors.get)
    table = ", ".join(f"{n} {e:.3g}" for n, e in sorted(errors.items(), key=lambda kv: kv[1]))
    if errors[answer] <= errors[best] * (1 + 1e-9):
        return right(f"{answer} has the lowest MSE at {bits} bits ({table}).")
    return wrong(f"{answer} gives MSE {errors[answer]:.3g}; another observer does better. "
                 "Hint: min-max lets the outliers set the step; measure each with metrics.mse.")


def check_lsq_init(W: torch.Tensor, bits: int, answer) -> Feedback:
    """Exercise 3: LSQ's initial step size per output channel, s = 2 mean|W| / sqrt(qmax), shape (out, 1)."""
    from ..core.granularity import PerChannel
    from ..training.lsq import lsq_init_scale

    read = as_float64(answer)
    if read is None:
        return wrong(f"answer with a tensor of shape {(W.shape[0], 1)}, got {type(answer).__name__}")
    expected = lsq_init_scale(W.double(), bits, PerChannel(0))
    if read[0].shape != expected.shape:
        return wrong(f"shape {tuple(read[0].shape)} should be {tuple(expected.shape)}: one step per output row "
                     "(mean over dim=1 with keepdim=True)")
    if tensors_close(answer, expected):
        return right(f"the initial steps range from {float(expected.min()):.4f} to {float(expected.max()):.4f}.")
    return wrong(f"values differ. Hint: qmax = 2**(bits - 1) - 1 = {2 ** (bits - 1) - 1} for {bits} bits; "
                 "use the mean of |W| along each row")
