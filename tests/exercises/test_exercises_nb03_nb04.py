"""The exercise checks of notebooks 03 and 04 accept the right answers and reject wrong ones."""

import pytest

from qlearn import PerChannel, PerGroup, PerTensor
from qlearn.exercises import Feedback, nb03, nb04
from qlearn.teaching.sweep import roundtrip
from qlearn.data.tensors import sample_tensor


def test_nb03_scale_zero_point():
    scale = (1.8 + 0.6) / 255
    fb = nb03.check_scale_zero_point(scale, -128 - round(-0.6 / scale))
    assert isinstance(fb, Feedback) and fb and repr(fb).startswith("Correct!")
    for s, zp in [((1.8 + 0.6) / 256, -64), (scale, -63), (scale, -63.6), (None, -64), ("a", 1)]:
        fb = nb03.check_scale_zero_point(s, zp)
        assert not fb and repr(fb).startswith("Not yet")


def test_nb03_symmetric_code():
    assert nb03.check_symmetric_code(1.8 / 7, round(0.4 / (1.8 / 7)))
    fb = nb03.check_symmetric_code(1.8 / 7.5, 2)
    assert not fb and "qmax" in fb.message
    assert not nb03.check_symmetric_code(1.8 / 7, 1)
    assert not nb03.check_symmetric_code(None, None)


def test_nb03_relu_ratio():
    x = sample_tensor("relu")
    ratio = roundtrip(x, 4, True)[1]["mse"] / roundtrip(x, 4, False)[1]["mse"]
    assert nb03.check_relu_ratio(ratio)
    fb = nb03.check_relu_ratio(1 / ratio)
    assert not fb and "other way round" in fb.message
    assert not nb03.check_relu_ratio(None)
    assert not nb03.check_relu_ratio(4.0 * 1.2)


def test_nb04_effective_bits():
    assert nb04.check_effective_bits(3.5)
    fb = nb04.check_effective_bits(3.25)
    assert not fb and "zero point" in fb.message
    assert not nb04.check_effective_bits("3.5")
    assert not nb04.check_effective_bits(None)


@pytest.mark.parametrize("bits, granularity", [(4, PerGroup(64)), (4, PerGroup(128)), (4, PerChannel(0)),
                                               (3, PerGroup(32)), (8, PerTensor()), (4, PerGroup(5))],
                         ids=["4b-g64", "4b-g128", "4b-channel", "3b-g32", "8b-tensor", "4b-g5"])
def test_nb04_budget_choice_agrees_with_the_rule(bits, granularity):
    fb = nb04.check_budget_choice(bits, granularity)
    W = sample_tensor("minilm_weight")
    try:
        n = roundtrip(W, bits, False, granularity)[1]
    except ValueError:
        assert not fb
        return
    assert bool(fb) == (n["effective_bits"] <= nb04.BUDGET_BITS and n["sqnr_db"] >= nb04.TARGET_SQNR_DB)


def test_nb04_budget_choice_is_solvable_and_rejects_bad_input():
    W = sample_tensor("minilm_weight")
    good = [g for g in (32, 64, 128) if (n := roundtrip(W, 4, False, PerGroup(g))[1])["effective_bits"] <= 4.5
            and n["sqnr_db"] >= 20.0]
    assert good
    assert not nb04.check_budget_choice(None, None)
    fb = nb04.check_budget_choice(True, PerGroup(64))
    assert not fb and "bits must be an int" in fb.message
    assert not nb04.check_budget_choice(4, "group")
