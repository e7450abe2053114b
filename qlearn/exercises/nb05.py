"""Exercises of notebook 05 (quantized inference)."""

from __future__ import annotations

import torch

from ..core.granularity import PerGroup
from ..inference import packing
from ..inference.linear import QuantLinear
from ..inference.quantize_model import model_size_bytes
from ._feedback import Feedback, as_int, as_number, describe, right, wrong

__all__ = ["check_int4_bytes", "check_naive_traffic", "check_pack_pair"]


def _report(ok: bool, if_right: str, if_wrong: str) -> Feedback:
    return right(if_right) if ok else wrong(if_wrong)


def check_int4_bytes(answer) -> Feedback:
    """Exercise 1: bytes of a 4096 x 4096 QuantLinear, 4 bits, PerGroup(128), asymmetric, no bias."""
    layer = QuantLinear(4096, 4096, bits=4, granularity=PerGroup(128), symmetric=False, bias=False, device="meta")
    expected = model_size_bytes(layer)
    number = as_number(answer)
    if number is None:
        return _report(False, "", f"answer with a number of bytes, got {describe(answer)}")
    return _report(number == expected, f"{expected:,} bytes: codes at half a byte each, plus a float32 scale "
                   "and an int8 zero point per group of 128.",
                   f"{number:,.0f} is not it. Count the packed codes (two per byte), then one scale (4 bytes) "
                   "and one zero point (1 byte) per group.")


def check_pack_pair(pack_pair) -> Feedback:
    """Exercise 2: pack_pair(q0, q1) -> the byte (int 0..255) holding two signed 4-bit codes, q0 in the low nibble."""
    if not callable(pack_pair):
        return _report(False, "", "pass your function itself: check_pack_pair(pack_pair)")
    for q0 in range(-8, 8):
        for q1 in range(-8, 8):
            expected = int(packing.pack(torch.tensor([[q0, q1]], dtype=torch.int8), 4))
            try:
                got = pack_pair(q0, q1)
            except Exception as err:  # the learner's code may raise anything
                return _report(False, "", f"pack_pair({q0}, {q1}) raised {type(err).__name__}: {err}")
            if as_int(got) != expected:
                return _report(False, "", f"pack_pair({q0}, {q1}) gave {describe(got)}, expected {expected} "
                               f"(0b{expected:08b}). Shift each code by +8 first, then put q1 in the high nibble.")
    return _report(True, "all 256 pairs match qlearn.inference.packing.pack.", "")


def check_naive_traffic(answer) -> Feedback:
    """Exercise 3: bytes the naive int8 path moves for a 4096 x 4096 weight at batch 1 (ignore X and Y)."""
    n = 4096 * 4096
    expected = n * (1 + 4 + 4)  # read int8 codes, write float32 W_hat, read W_hat again in the matmul
    number = as_number(answer)
    if number is None:
        return _report(False, "", f"answer with a number of bytes, got {describe(answer)}")
    return _report(number == expected, f"{expected:,} bytes, more than twice the {4 * n:,} of plain float32: "
                   "that is why dequantize-then-matmul is slower than not quantizing at all.",
                   f"{number:,.0f} is not it. The naive path reads the int8 codes, writes a float32 copy, "
                   "and the matmul reads that copy again.")
