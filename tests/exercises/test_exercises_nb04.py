"""Notebook 04's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest

from qlearn import PerChannel, PerGroup, PerTensor
from qlearn.data.tensors import sample_tensor
from qlearn.exercises import nb04
from qlearn.teaching.sweep import roundtrip

from .answer_forms import NOT_NUMBERS, numeric_forms

SCALE_BITS, ZERO_POINT_BITS = 32, 8  # what the exercise counts per group: QuantLinear's float32 scale, int8 zero point


@pytest.mark.parametrize("answer", numeric_forms(3 + (SCALE_BITS + ZERO_POINT_BITS) / 64))
def test_effective_bits_accepts_every_numeric_form(answer):
    """04 Ex1 answered as a tensor (as tensor(3.5) was under the old fp16 count) is right."""
    assert nb04.check_effective_bits(answer)


@pytest.mark.parametrize("group", [32, 128], ids=["g32", "g128"])
def test_effective_bits_names_the_wrong_group_size(group):
    fb = nb04.check_effective_bits(3 + (SCALE_BITS + ZERO_POINT_BITS) / group)
    assert not fb and f"groups of {group}" in fb.message


def test_effective_bits_explains_the_papers_fp16_count():
    fb = nb04.check_effective_bits(3 + (16 + 16) / 64)
    assert not fb and "fp16" in fb.message and "float32" in fb.message


def test_effective_bits_rejects_wrong_answers_and_says_why():
    fb = nb04.check_effective_bits(3 + SCALE_BITS / 64)
    assert not fb and "scale only" in fb.message
    fb = nb04.check_effective_bits(3 + ZERO_POINT_BITS / 64)
    assert not fb and "zero point only" in fb.message
    fb = nb04.check_effective_bits(3)
    assert not fb and "codes only" in fb.message
    for bad in NOT_NUMBERS:
        assert not nb04.check_effective_bits(bad)


@pytest.mark.parametrize("bits, granularity", [(4, PerGroup(64)), (4, PerGroup(128)), (4, PerChannel(0)),
                                               (3, PerGroup(32)), (8, PerTensor()), (4, PerGroup(5))],
                         ids=["4b-g64", "4b-g128", "4b-channel", "3b-g32", "8b-tensor", "4b-g5"])
def test_budget_choice_agrees_with_the_rule(bits, granularity):
    fb = nb04.check_budget_choice(bits, granularity)
    W = sample_tensor("minilm_weight")
    try:
        n = roundtrip(W, bits, False, granularity)[1]
    except ValueError:
        assert not fb
        return
    assert bool(fb) == (n["effective_bits"] <= nb04.BUDGET_BITS and n["sqnr_db"] >= nb04.TARGET_SQNR_DB)


def _a_right_choice():
    W = sample_tensor("minilm_weight")
    good = [g for g in (32, 64, 128) if (n := roundtrip(W, 4, False, PerGroup(g))[1])["effective_bits"]
            <= nb04.BUDGET_BITS and n["sqnr_db"] >= nb04.TARGET_SQNR_DB]
    assert good, "the exercise has no answer"
    return 4, PerGroup(good[0])


@pytest.mark.parametrize("bits", numeric_forms(4))
def test_budget_choice_accepts_every_numeric_form_of_bits(bits):
    """04 Ex2 answered with bits = 4.0 is right."""
    _, granularity = _a_right_choice()
    assert nb04.check_budget_choice(bits, granularity)


def test_budget_choice_rejects_bad_input():
    assert not nb04.check_budget_choice(None, None)
    fb = nb04.check_budget_choice(True, PerGroup(64))
    assert not fb and "bits must be a whole number" in fb.message
    assert not nb04.check_budget_choice(4.5, PerGroup(64))
    assert not nb04.check_budget_choice(4, "group")
