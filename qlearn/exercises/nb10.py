"""Checks for the exercises of notebook 10 (QLoRA). Each returns a `Feedback`."""

from __future__ import annotations

import torch

from ..methods.finetune_memory import nf4_bits_per_weight
from ._feedback import Feedback, Mistake, as_float64, check_number, describe, right, tensors_close, wrong

__all__ = ["GATE_SHAPE", "N_WEIGHTS_7B", "RANK", "check_lora_forward", "check_lora_param_count", "check_qlora_base_gb"]

GATE_SHAPE = (1536, 576)  # SmolLM2's gate_proj (out, in)
RANK = 8
N_WEIGHTS_7B = 7_000_000_000


def check_lora_param_count(answer) -> Feedback:
    """Exercise 1: how many numbers does a rank-8 adapter on a (1536, 576) Linear train? r * (in + out)."""
    out, n_in = GATE_SHAPE
    expected = RANK * (n_in + out)
    return check_number(
        answer, expected, count=True,
        mistakes=[Mistake(out * n_in, "that is the size of the full weight W; the adapter trains only A (r, in) and "
                          "B (out, r)"),
                  Mistake(RANK * n_in, "you counted only one of the two matrices: A is (r, in), B is (out, r)"),
                  Mistake(RANK * out, "you counted only one of the two matrices: A is (r, in), B is (out, r)")],
        right_message=f"A is ({RANK}, {n_in}) and B is ({out}, {RANK}): {RANK} * ({n_in} + {out}) = {expected:,} "
                      f"numbers, {expected / (out * n_in):.1%} of the layer's {out * n_in:,} weights.",
        wrong_message=lambda got: f"{got:g} is not it: count the entries of A (r, in) and B (out, r) with r = {RANK}",
        not_a_number=f"give one number (int, float, numpy scalar or 0-d tensor), got {describe(answer)}")


def check_qlora_base_gb(answer) -> Feedback:
    """Exercise 2: gigabytes (1e9 bytes) of 7e9 weights in NF4 with double quantization, blocks of 64
    (4 + 8/64 + 32/(64*256) bits each; the prompt asks for 3 decimals: 3.611)."""
    gb = N_WEIGHTS_7B / 8 / 1e9  # GB per bit per weight
    expected = gb * nf4_bits_per_weight(64, double_quant=True)
    units = "check the units: bits / 8 = bytes, and 1 GB = 1e9 bytes (not bytes, bits or GiB)"
    return check_number(
        answer, expected,
        mistakes=[Mistake(gb * 4, "that is 4 bits alone: every block of 64 weights also stores its absmax constant"),
                  Mistake(gb * nf4_bits_per_weight(64, double_quant=False), "that is NF4 with float32 absmax (4.5 "
                          "bits); double quantization stores the absmax in 8 bits"),
                  Mistake(gb * (4 + 8 / 64), "you forgot the float32 scale that every 256 absmax values share: "
                          "+ 32/(64*256) bits per weight"),
                  Mistake(gb * 16, "that is the fp16 model (16 bits per weight); the QLoRA base is NF4"),
                  *(Mistake(expected * k, units) for k in (1e9, 8, 1e9 / 2**30))],
        right_message=f"7e9 * (4 + 8/64 + 32/(64*256)) / 8 bytes = {expected:.3f} GB (a fp16 copy takes 14 GB).",
        wrong_message=lambda got: f"{got:g} GB is not it: bits per weight = 4 + 8/64 + 32/(64*256); times 7e9, "
                                  "divided by 8 and 1e9",
        not_a_number=f"give one number in GB (1e9 bytes), got {describe(answer)}")


def _lora(x, W, A, B, scaling):
    return x @ W.T + scaling * (x @ A.T @ B.T)  # (tokens, out)


def check_lora_forward(fn) -> Feedback:
    """Exercise 3: fn(x, W, A, B, alpha, r) must return x W^T + (alpha / r) x A^T B^T. Compared in float64, with
    float rounding allowed: an answer computed in float64 or bfloat16 passes."""
    if not callable(fn):
        return wrong("pass your function itself, e.g. check_lora_forward(my_lora)")
    g = torch.Generator().manual_seed(10)
    for out, n_in, r, alpha, tokens in ((6, 5, 2, 4.0, 3), (4, 8, 1, 1.0, 2), (7, 3, 3, 16.0, 4)):
        x, W = torch.randn(tokens, n_in, generator=g), torch.randn(out, n_in, generator=g)
        A, B = torch.randn(r, n_in, generator=g), torch.randn(out, r, generator=g)
        x64, W64, A64, B64 = (t.double() for t in (x, W, A, B))
        expected = _lora(x64, W64, A64, B64, alpha / r)
        # the size of the terms summed: what float rounding is relative to
        scale = float(_lora(x64.abs(), W64.abs(), A64.abs(), B64.abs(), alpha / r).max())
        try:
            got = fn(x, W, A, B, alpha, r)
        except Exception as err:  # a learner's bug is reported, not raised
            return wrong(f"your function raised {type(err).__name__}: {err} (x {tuple(x.shape)}, W {tuple(W.shape)}, "
                         f"A {tuple(A.shape)}, B {tuple(B.shape)})")
        read = as_float64(got)
        if read is None or read[0].shape != expected.shape:
            return wrong(f"return a tensor of shape (tokens, out) = {tuple(expected.shape)}, got {describe(got)}")
        if tensors_close(got, expected, scale=scale):
            continue
        if alpha != r and tensors_close(got, _lora(x64, W64, A64, B64, 1.0), scale=scale):
            return wrong("the update is missing its scaling alpha / r")
        if alpha != r and tensors_close(got, _lora(x64, W64, A64, B64, r / alpha), scale=scale):
            return wrong("the scaling is alpha / r, not r / alpha")
        return wrong(f"for x {tuple(x.shape)}, r={r}, alpha={alpha:g} your output differs from "
                     f"x W^T + (alpha/r) x A^T B^T by up to {float((read[0] - expected).abs().max()):.3g}")
    return right("your adapter matches y = x W^T + (alpha / r) x A^T B^T on 3 layers.")
