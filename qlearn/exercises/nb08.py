"""Checks for the exercises of notebook 08 (NF4, HQQ, GPTQ, AWQ). Each returns a `Feedback`."""

from __future__ import annotations

import functools

import torch

from ..methods import nf4
from ._feedback import Feedback, Mistake, as_float64, check_number, describe, right, tensors_close, wrong

__all__ = ["DQ_BLOCK", "DQ_SHAPE", "awq_scale", "check_awq_scale", "check_double_quant_bits", "check_obs_update",
           "double_quant_bits", "obs_update"]

DQ_SHAPE, DQ_BLOCK = (384, 1536), 128  # exercise 1: MiniLM's feed-forward output layer, NF4 block 128


@functools.lru_cache(maxsize=1)
def double_quant_bits() -> float:
    """Bits per weight, from nbytes, of NF4 with double quantization on a DQ_SHAPE weight with block DQ_BLOCK."""
    W = torch.randn(DQ_SHAPE, generator=torch.Generator().manual_seed(0))
    return nf4.quantize_weight(W, group_size=DQ_BLOCK, double_quant=True).bits_per_weight


def check_double_quant_bits(value) -> Feedback:
    """Exercise 1: bits per weight of NF4 with double quantization, block 128, on a 384 x 1536 weight (the prompt
    asks for 4 decimals: 4.0635)."""
    want = double_quant_bits()
    weights = DQ_SHAPE[0] * DQ_SHAPE[1]
    no_mean = want - 32 / weights  # forgetting the one float32 mean is a rounding, not a mistake: 4.0635 either way
    mistakes = [Mistake(4 + 32 / DQ_BLOCK, f"{4 + 32 / DQ_BLOCK:.4f} is NF4 without double quantization (float32 "
                        "absmax); with it, each absmax is stored in 8 bits, and every 256 of them share one float32 "
                        "scale"),
                Mistake(4 + 8 / DQ_BLOCK, f"{4 + 8 / DQ_BLOCK:.4f} counts the 8-bit absmax but forgets the float32 "
                        "scale of every 256 absmax values (and the one float32 mean)"),
                Mistake(4 + 8 / 64 + 32 / (64 * 256), "that is the count for blocks of 64 (section 2's 4.1270); the "
                        f"exercise uses blocks of {DQ_BLOCK}"),
                Mistake(4.0, "4 bits counts the codes only: every block also stores its absmax")]
    return check_number(
        value, (want + no_mean) / 2, tolerance=(want - no_mean) / 2,
        right_message=f"{want:.4f} bits per weight: 4 for the code, 8 / {DQ_BLOCK} for each block's 8-bit absmax, "
                      "and 32 bits per 256 absmax values for their own scale, plus one float32 mean.",
        wrong_message=lambda got: f"got {got:.4f}; count the bits of the codes, the 8-bit absmax per block of "
                                  f"{DQ_BLOCK}, one float32 scale per 256 blocks and one float32 mean, then divide "
                                  "by the number of weights",
        not_a_number=f"pass one number (a float or a one-element tensor), got {describe(value)}",
        mistakes=mistakes)


def _obs_cases():
    g = torch.Generator().manual_seed(8)
    for out, inp, j in ((4, 6, 0), (3, 8, 2), (5, 5, 4), (2, 7, 3)):
        W = torch.randn(out, inp, generator=g)
        A = torch.randn(inp, inp, generator=g)
        H_inv = torch.linalg.inv(A @ A.T + inp * torch.eye(inp))
        U = torch.linalg.cholesky(H_inv, upper=True)  # (in, in) upper factor of H^-1
        q = torch.round(W[:, j] * 2) / 2  # (out,) a rounded column
        yield W, j, q, U


def obs_update(W: torch.Tensor, j: int, q: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """The reference answer of exercise 2: W with column j set to q and its error pushed onto columns > j."""
    W = W.clone()
    err = (W[:, j] - q) / U[j, j]  # (out,)
    W[:, j] = q
    W[:, j + 1:] -= err[:, None] * U[j, j + 1:][None, :]  # (out, in - j - 1)
    return W


def check_obs_update(fn) -> Feedback:
    """Exercise 2: fn(W, j, q, U) returns a copy of W with column j replaced by q and the later columns updated:
    W[:, k] -= (W[:, j] - q) / U[j, j] * U[j, k] for k > j; columns before j unchanged. Compared in float64 with
    float rounding allowed, so the reference code's form W[:, j:] -= err[:, None] * U[j, j:] (which sets column j
    to q up to 1e-7) and an answer computed in float64 or bfloat16 pass."""
    if not callable(fn):
        return wrong("pass your function itself, e.g. check_obs_update(my_update)")
    for W, j, q, U in _obs_cases():
        given = W.clone()
        try:
            got = fn(given, j, q, U)
        except Exception as err:  # a learner's bug is reported, not raised
            return wrong(f"your function raised {type(err).__name__}: {err} for W {tuple(W.shape)}, j={j}")
        if not torch.equal(given, W):
            return wrong("your function changed the W it was given; start from W.clone()")
        read = as_float64(got)
        if read is None or read[0].shape != W.shape:
            return wrong(f"return a tensor of W's shape {tuple(W.shape)}, got {describe(got)}")
        got = read[0].to(read[1])  # back in the dtype it was computed in, for tensors_close
        want = obs_update(W.double(), j, q.double(), U.double())  # (out, in) the reference, in float64
        scale = float(want.abs().max())
        if not tensors_close(got[:, :j], want[:, :j], scale=scale):
            return wrong(f"for j={j} you changed the columns before j; they are already rounded, leave them")
        if not tensors_close(got[:, j], want[:, j], scale=scale):
            return wrong(f"for j={j} column j must become the rounded q")
        if not tensors_close(got, want, scale=scale):
            flipped = want.clone()
            flipped[:, j + 1:] = 2 * W[:, j + 1:].double() - want[:, j + 1:]
            hint = " (the sign is flipped: subtract the error times U[j, k])" if tensors_close(
                got, flipped, scale=scale) else ""
            return wrong(f"for W {tuple(W.shape)}, j={j} the later columns are not W[:, k] - (W[:, j] - q) / U[j, j] "
                         f"* U[j, k]{hint}")
    return right("your update is GPTQ's inner step: the rounded column's error, scaled by 1 / U[j, j], is spread "
                 "over the columns still to be rounded along row j of U.")


def awq_scale(X: torch.Tensor, alpha: float) -> torch.Tensor:
    """The reference answer of exercise 3: s = mean|X|^alpha over tokens, divided by sqrt(max(s) * min(s))."""
    s = X.abs().mean(dim=0).pow(alpha).clamp(min=1e-4)  # (in,)
    return s / (s.max() * s.min()).sqrt()


def check_awq_scale(fn) -> Feedback:
    """Exercise 3: fn(X, alpha) returns AWQ's input scale s (in,) for activations X (tokens, in): mean|x|^alpha over
    the tokens, divided by sqrt(max(s) * min(s)) (section 5 explains why). Compared in float64, float rounding
    allowed."""
    if not callable(fn):
        return wrong("pass your function itself, e.g. check_awq_scale(my_scale)")
    g = torch.Generator().manual_seed(3)
    for tokens, inp, alpha in ((16, 8, 0.5), (32, 12, 0.0), (10, 6, 0.85), (20, 16, 1.0)):
        X = torch.randn(tokens, inp, generator=g) * torch.rand(inp, generator=g) * 5
        try:
            got = fn(X.clone(), alpha)
        except Exception as err:  # a learner's bug is reported, not raised
            return wrong(f"your function raised {type(err).__name__}: {err} for X {tuple(X.shape)}, alpha={alpha}")
        read = as_float64(got)
        if read is None or read[0].shape != (inp,):
            return wrong(f"return one scale per input channel, a tensor of shape ({inp},), got {describe(got)}")
        if tensors_close(got, awq_scale(X.double(), alpha)):
            continue
        if tensors_close(got, X.double().abs().mean(dim=0).pow(alpha)):
            return wrong(f"at alpha={alpha} you return mean|x|^alpha; normalise it by sqrt(max(s) * min(s))")
        return wrong(f"for X {tuple(X.shape)}, alpha={alpha} your scale differs from mean_tokens |x|^alpha / "
                     "sqrt(max * min); average |x| over the tokens (dim 0)")
    return right("that is AWQ's scale: channels with large activations get s > 1, so their weights are rounded "
                 "on a finer relative grid.")
