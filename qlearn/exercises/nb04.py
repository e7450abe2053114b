"""Exercises of notebook 04 (granularity). Each check prints whether the answer is right."""

from __future__ import annotations

import math

from ..bits import effective_bits
from ..granularity import Granularity, PerGroup
from ..sweep import roundtrip
from ..tensors import sample_tensor

TARGET_SQNR_DB = 20.0
BUDGET_BITS = 4.5


def check_effective_bits(value) -> None:
    """Exercise 1: effective bits per weight of 3-bit codes, groups of 64, an fp16 scale and an fp16 zero point."""
    if value is None:
        print("Not answered yet: replace None with your number.")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        print(f"Not yet: the answer is a number of bits, got {value!r}.")
        return
    want = effective_bits((384, 384), 3, PerGroup(64))
    if math.isclose(value, want, rel_tol=1e-6):
        print(f"Correct: 3 + (16 + 16) / 64 = {want:.2f} bits per weight.")
    elif math.isclose(value, 3 + 16 / 64):
        print("Not yet: the asymmetric scheme also stores a zero point per group.")
    else:
        print("Not yet: each group of 64 weights shares one 16-bit scale and one 16-bit zero point.")


def check_budget_choice(bits, granularity) -> None:
    """Exercise 2: asymmetric bits and granularity for the MiniLM weight with SQNR >= 20 dB in <= 4.5 bits per weight."""
    if bits is None or granularity is None:
        print("Not answered yet: set bits (an int) and granularity (e.g. qlearn.PerGroup(128)).")
        return
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        print(f"Not yet: bits must be an int from 2 to 8, got {bits!r}.")
        return
    if not isinstance(granularity, Granularity):
        print(f"Not yet: granularity must be PerTensor(), PerChannel(0) or PerGroup(g), got {granularity!r}.")
        return
    W = sample_tensor("minilm_weight")
    try:
        numbers = roundtrip(W, bits, False, granularity)[1]
    except ValueError as err:
        print(f"Not yet: {err}")
        return
    eb, sqnr = numbers["effective_bits"], numbers["sqnr_db"]
    verdict = f"{bits}-bit {granularity}: {eb:.3f} bits per weight, SQNR {sqnr:.2f} dB."
    if eb > BUDGET_BITS:
        print(f"Not yet: {verdict} Over the budget of {BUDGET_BITS} bits: fewer bits or larger groups.")
    elif sqnr < TARGET_SQNR_DB:
        print(f"Not yet: {verdict} Below {TARGET_SQNR_DB} dB: finer granularity or more bits.")
    else:
        print(f"Correct: {verdict} Within budget and above target.")
