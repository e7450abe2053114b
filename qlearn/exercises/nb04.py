"""Exercises of notebook 04 (granularity). Each check returns a Feedback (truthy when right)."""

from __future__ import annotations

from ..core.bits import PAPERS_FP16, SCALE_BITS, ZERO_POINT_BITS, effective_bits
from ..core.granularity import Granularity, PerGroup
from ..data.tensors import sample_tensor
from ..teaching.sweep import roundtrip
from ._feedback import Feedback, Mistake, as_int, check_number, describe, right, wrong

__all__ = ["BUDGET_BITS", "TARGET_SQNR_DB", "check_budget_choice", "check_effective_bits"]

TARGET_SQNR_DB = 20.0
BUDGET_BITS = 4.75


def _effective(bits: int, group: int, scale_bits: int = SCALE_BITS, zero_point_bits: int = ZERO_POINT_BITS) -> float:
    """The course's count (qlearn.core.bits): a float32 scale and an int8 zero point per group."""
    return effective_bits((1, 3072), bits, PerGroup(group), scale_bits=scale_bits, zero_point_bits=zero_point_bits)


def check_effective_bits(value) -> Feedback:
    """Exercise 1: effective bits per weight of 3-bit asymmetric codes in groups of 64, counted as QuantLinear
    stores them: a float32 scale and an int8 zero point per group (3 + 40 / 64 = 3.625)."""
    want = _effective(3, 64)
    formula = f"3 + ({SCALE_BITS} + {ZERO_POINT_BITS}) / 64"
    known = [(_effective(3, 64, zero_point_bits=0), f"you counted the scale only, but the asymmetric scheme also "
              f"stores a {ZERO_POINT_BITS}-bit zero point per group"),
             (_effective(3, 64, scale_bits=0), f"you counted the zero point only, but each group also stores a "
              f"{SCALE_BITS}-bit scale"),
             (3.0, "3 bits counts the codes only, but every group of 64 also stores its scale and zero point"),
             (_effective(3, 64, **PAPERS_FP16), "that is the papers' count with an fp16 scale and an fp16 zero point "
              f"(3 + 32 / 64); this course counts what QuantLinear stores, a float32 scale ({SCALE_BITS} bits) and an "
              f"int8 zero point ({ZERO_POINT_BITS} bits) per group")]
    known += [(_effective(3, g), f"that is the count for groups of {g}, and the exercise asks for groups of 64")
              for g in (16, 32, 128, 256)]
    return check_number(
        value, want, mistakes=[Mistake(v, f"{v:g}: {why}") for v, why in known],
        right_message=f"{formula} = {want:.4g} bits per weight.",
        wrong_message=f"each group of 64 weights shares one float32 scale ({SCALE_BITS} bits) and one int8 zero point "
                      f"({ZERO_POINT_BITS} bits): bits + (scale bits + zero point bits) / 64.",
        not_a_number=f"answer with a number of bits (replace the None), got {describe(value)}")


def check_budget_choice(bits, granularity) -> Feedback:
    """Exercise 2: asymmetric bits and granularity for the MiniLM weight with SQNR >= TARGET_SQNR_DB (20 dB) in at
    most BUDGET_BITS (4.75) effective bits per weight (qlearn.core.bits' count: float32 scale, int8 zero point)."""
    n_bits = as_int(bits)
    if n_bits is None or not 2 <= n_bits <= 8:
        return wrong(f"bits must be a whole number from 2 to 8 (replace the None), got {describe(bits)}")
    if not isinstance(granularity, Granularity):
        return wrong(f"granularity must be PerTensor(), PerChannel(0) or PerGroup(g), got {describe(granularity)}")
    W = sample_tensor("minilm_weight")
    try:
        numbers = roundtrip(W, n_bits, False, granularity)[1]
    except ValueError as err:
        return wrong(str(err))
    eb, sqnr = numbers["effective_bits"], numbers["sqnr_db"]
    verdict = f"{n_bits}-bit {granularity}: {eb:.3f} bits per weight, SQNR {sqnr:.2f} dB."
    if eb > BUDGET_BITS:
        return wrong(f"{verdict} Over the budget of {BUDGET_BITS} bits: fewer bits or larger groups.")
    if sqnr < TARGET_SQNR_DB:
        return wrong(f"{verdict} Below {TARGET_SQNR_DB} dB: finer granularity or more bits.")
    return right(f"{verdict} Within budget and above target.")
