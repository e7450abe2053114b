"""Exercises of notebook 04 (granularity). Each check returns a Feedback (truthy when right)."""

from __future__ import annotations

import math

from ..core.bits import effective_bits
from ..core.granularity import Granularity, PerGroup
from ..teaching.sweep import roundtrip
from ..data.tensors import sample_tensor
from ._feedback import Feedback, right, wrong

TARGET_SQNR_DB = 20.0
BUDGET_BITS = 4.5


def check_effective_bits(value) -> Feedback:
    """Exercise 1: effective bits per weight of 3-bit codes, groups of 64, an fp16 scale and an fp16 zero point."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return wrong(f"answer with a number of bits (replace the None), got {value!r}")
    want = effective_bits((384, 384), 3, PerGroup(64))
    if math.isclose(value, want, rel_tol=1e-6):
        return right(f"3 + (16 + 16) / 64 = {want:.2f} bits per weight.")
    if math.isclose(value, 3 + 16 / 64):
        return wrong("the asymmetric scheme also stores a zero point per group.")
    return wrong("each group of 64 weights shares one 16-bit scale and one 16-bit zero point.")


def check_budget_choice(bits, granularity) -> Feedback:
    """Exercise 2: asymmetric bits and granularity for the MiniLM weight with SQNR >= 20 dB in <= 4.5 bits per weight."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        return wrong(f"bits must be an int from 2 to 8 (replace the None), got {bits!r}")
    if not isinstance(granularity, Granularity):
        return wrong(f"granularity must be PerTensor(), PerChannel(0) or PerGroup(g), got {granularity!r}")
    W = sample_tensor("minilm_weight")
    try:
        numbers = roundtrip(W, bits, False, granularity)[1]
    except ValueError as err:
        return wrong(str(err))
    eb, sqnr = numbers["effective_bits"], numbers["sqnr_db"]
    verdict = f"{bits}-bit {granularity}: {eb:.3f} bits per weight, SQNR {sqnr:.2f} dB."
    if eb > BUDGET_BITS:
        return wrong(f"{verdict} Over the budget of {BUDGET_BITS} bits: fewer bits or larger groups.")
    if sqnr < TARGET_SQNR_DB:
        return wrong(f"{verdict} Below {TARGET_SQNR_DB} dB: finer granularity or more bits.")
    return right(f"{verdict} Within budget and above target.")
