"""HQQ, Half-Quadratic Quantization (Badri & Shaji 2023, mobiusml.github.io/hqq_blog): a data-free zero-point solver.

Objective, per group: argmin over zero of || W - W_hat ||_p^p with p < 1 (a heavy-tailed loss that lets a
few outliers stay wrong so the bulk is right), W_hat = (round(W s + z) - z) / s with HQQ's inverse scale s.
Splitting with an extra variable W_e (the error) and a quadratic coupling of weight beta gives two
closed-form half-steps, repeated while beta grows:

    W_e  = shrink_p(W - W_hat(z), beta)              generalized soft-thresholding
    z    = mean(W_q - (W - W_e) s)                   over the group, W_q = clamp(round(W s + z), 0, 2^b - 1)
    beta = kappa * beta

The scale stays at its min-max value (as the paper and the package's default). This follows hqq's
`optimize_weights_proximal_v2` (hqq/core/optimize.py): with `early_stop` it stops when the mean
|W - W_hat| stops falling and keeps the best zero. hqq's default solver (`..._legacy`) never grows beta;
this one does, as the paper says. At the file boundary HQQ's (W_q - z) / s with codes 0..2^b - 1 becomes
qlearn's r = scale * (q - zero_point): scale = 1 / s, q = W_q + qmin, zero_point = z + qmin. The zero
point stays a float (the solver moves it off the integer grid), stored as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.validation import check_bits, check_bool
from ..core.primitives import qrange
from ._checks import check_group_size, check_inputs, check_number, check_positive_int, check_weight
from .weight import UniformWeight, granularity_for


@dataclass(frozen=True, eq=False)
class HQQWeight(UniformWeight):
    """A UniformWeight with a float zero point, and the solver's mean |W - W_hat| at every iteration."""

    history: tuple[float, ...] = ()


def shrink_lp(x: torch.Tensor, beta: float, lp_norm: float) -> torch.Tensor:
    """Generalized soft-thresholding, the proximal step of the lp norm (p <= 1).

    shrink(x) = sign(x) * relu(|x| - |x|^(p - 1) / beta)       (p = 1: the ordinary soft threshold)
    Shapes: x (...) -> (...).
    """
    a = x.abs()
    return torch.sign(x) * (a - a.pow(lp_norm - 1) / beta).clamp_min(0.0)


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, bits: int = 4, group_size: int | None = 64,
                    iters: int = 20, lp_norm: float = 0.7, beta: float = 10.0, kappa: float = 1.01,
                    early_stop: bool = True) -> HQQWeight:
    """HQQ: min-max inverse scale, zero point from the half-quadratic lp solver; data-free (X checked, unused).

    repeat iters times: W_e = shrink_p(W - W_hat, beta); z = mean(W_q - (W - W_e) s); beta *= kappa

    Shapes: W (out, in); X (tokens, in) or None -> HQQWeight of W (out, in); history (iterations run,).
    """
    check_weight(W)
    check_inputs(X, W, required=False, method="hqq")
    check_bits(bits)
    granularity = granularity_for(check_group_size(group_size, W.shape[1]))
    check_positive_int(iters, "iters")
    lp_norm = check_number(lp_norm, "lp_norm", 0.0, low_inclusive=False, high=1.0)
    beta = check_number(beta, "beta", 0.0, low_inclusive=False)
    kappa = check_number(kappa, "kappa", 1.0)
    check_bool(early_stop, "early_stop")
    if beta == float("inf") or kappa == float("inf"):
        raise ValueError("beta and kappa must be finite")

    W_f = granularity.to_blocks(W.detach().float())  # (out, in/g, g), or (out, in) per row
    top = 2 ** bits - 1  # HQQ codes are 0..2^b - 1
    w_min, w_max = W_f.amin(dim=-1, keepdim=True), W_f.amax(dim=-1, keepdim=True)  # (out, in/g, 1)
    denom = w_max - w_min
    s = torch.where(denom.abs() <= 1e-4, torch.ones_like(denom), top / denom).clamp(max=2e4)  # inverse scale
    z = -w_min * s  # zero point in HQQ's frame

    history, best, best_z = [], float("inf"), z
    for _ in range(iters):
        W_q = torch.round(W_f * s + z).clamp(0, top)
        W_hat = (W_q - z) / s
        error = float((W_f - W_hat).abs().mean())
        history.append(error)
        if early_stop:
            if best - error > 0:
                best, best_z = error, z
            else:
                z = best_z
                break
        W_e = shrink_lp(W_f - W_hat, beta, lp_norm)
        z = torch.mean(W_q - (W_f - W_e) * s, dim=-1, keepdim=True)  # (out, in/g, 1) closed form
        beta *= kappa

    qmin, _ = qrange(bits)
    W_q = torch.round(W_f * s + z).clamp(0, top).reshape(W.shape)  # (out, in)
    return HQQWeight.from_codes((W_q + qmin).to(torch.int8), 1.0 / s, z + qmin, bits, granularity, W.dtype,
                                history=tuple(history))
