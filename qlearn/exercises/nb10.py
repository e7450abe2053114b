"""Checks for the exercises of notebook 10 (QLoRA). Each returns a `Feedback`."""

from __future__ import annotations

import torch

from ..methods.finetune_memory import nf4_bits_per_weight
from ._feedback import Feedback, as_number, describe, right, wrong

GATE_SHAPE = (1536, 576)  # SmolLM2's gate_proj (out, in)
RANK = 8
N_WEIGHTS_7B = 7_000_000_000


def check_lora_param_count(answer) -> Feedback:
    """Exercise 1: how many numbers does a rank-8 adapter on a (1536, 576) Linear train? r * (in + out)."""
    value = as_number(answer)
    out, n_in = GATE_SHAPE
    expected = RANK * (n_in + out)
    if value is None:
        return wrong(f"give one number (int, float, numpy scalar or 0-d tensor), got {describe(answer)}")
    if value == expected:
        return right(f"A is ({RANK}, {n_in}) and B is ({out}, {RANK}): {RANK} * ({n_in} + {out}) = {expected:,} "
                     f"numbers, {expected / (out * n_in):.1%} of the layer's {out * n_in:,} weights.")
    if value == out * n_in:
        return wrong("that is the size of the full weight W; the adapter trains only A (r, in) and B (out, r)")
    if value in (RANK * n_in, RANK * out):
        return wrong("you counted only one of the two matrices: A is (r, in), B is (out, r)")
    return wrong(f"{value:g} is not it: count the entries of A (r, in) and B (out, r) with r = {RANK}")


def check_qlora_base_gb(answer) -> Feedback:
    """Exercise 2: gigabytes (1e9 bytes) of 7e9 weights in NF4 with double quantization (4 + 0.127 bits each)."""
    value = as_number(answer)
    expected = N_WEIGHTS_7B * nf4_bits_per_weight(64, double_quant=True) / 8 / 1e9
    if value is None:
        return wrong(f"give one number in GB (1e9 bytes), got {describe(answer)}")
    if abs(value - expected) <= 0.01 * expected:
        return right(f"7e9 * (4 + 8/64 + 32/(64*256)) / 8 bytes = {expected:.3f} GB (a fp16 copy takes 14 GB).")
    if abs(value - N_WEIGHTS_7B * 4 / 8 / 1e9) <= 0.005:
        return wrong("that is 4 bits alone: every block of 64 weights also stores its absmax constant")
    if abs(value - N_WEIGHTS_7B * nf4_bits_per_weight(64, double_quant=False) / 8 / 1e9) <= 0.01:
        return wrong("that is NF4 with float32 absmax (4.5 bits); double quantization stores the absmax in 8 bits")
    if any(abs(value - expected * k) <= 0.01 * expected * k for k in (1e9, 8, 1e9 / 2**30)):
        return wrong("check the units: bits / 8 = bytes, and 1 GB = 1e9 bytes (not bytes, bits or GiB)")
    return wrong(f"{value:g} GB is not it: bits per weight = 4 + 8/64 + 32/(64*256); times 7e9, divided by 8 and 1e9")


def check_lora_forward(fn) -> Feedback:
    """Exercise 3: fn(x, W, A, B, alpha, r) must return x W^T + (alpha / r) x A^T B^T."""
    if not callable(fn):
        return wrong("pass your function itself, e.g. check_lora_forward(my_lora)")
    g = torch.Generator().manual_seed(10)
    for out, n_in, r, alpha, tokens in ((6, 5, 2, 4.0, 3), (4, 8, 1, 1.0, 2), (7, 3, 3, 16.0, 4)):
        x, W = torch.randn(tokens, n_in, generator=g), torch.randn(out, n_in, generator=g)
        A, B = torch.randn(r, n_in, generator=g), torch.randn(out, r, generator=g)
        expected = x @ W.T + (alpha / r) * (x @ A.T @ B.T)
        try:
            got = fn(x, W, A, B, alpha, r)
        except Exception as err:  # a learner's bug is reported, not raised
            return wrong(f"your function raised {type(err).__name__}: {err} (x {tuple(x.shape)}, W {tuple(W.shape)}, "
                         f"A {tuple(A.shape)}, B {tuple(B.shape)})")
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return wrong(f"return a tensor of shape (tokens, out) = {tuple(expected.shape)}, got {describe(got)}")
        if torch.allclose(got, x @ W.T + x @ A.T @ B.T, atol=1e-5) and alpha != r:
            return wrong("the update is missing its scaling alpha / r")
        if torch.allclose(got, x @ W.T + (r / alpha) * (x @ A.T @ B.T), atol=1e-5) and alpha != r:
            return wrong("the scaling is alpha / r, not r / alpha")
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            return wrong(f"for x {tuple(x.shape)}, r={r}, alpha={alpha:g} your output differs from "
                         f"x W^T + (alpha/r) x A^T B^T by up to {float((got - expected).abs().max()):.3g}")
    return right("your adapter matches y = x W^T + (alpha / r) x A^T B^T on 3 layers.")
