"""Notebook 03's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest

from qlearn.data.tensors import sample_tensor
from qlearn.exercises import Feedback, nb03
from qlearn.teaching.sweep import roundtrip

from .answer_forms import NOT_NUMBERS, numeric_forms

SCALE = (1.8 + 0.6) / 255
ZERO_POINT = -128 - round(-0.6 / SCALE)


@pytest.mark.parametrize("zero_point", numeric_forms(ZERO_POINT))
def test_scale_zero_point_accepts_every_numeric_form(zero_point):
    fb = nb03.check_scale_zero_point(SCALE, zero_point)
    assert isinstance(fb, Feedback) and fb and repr(fb).startswith("Correct!")


def test_scale_zero_point_rejects_wrong_answers():
    fb = nb03.check_scale_zero_point((1.8 + 0.6) / 256, ZERO_POINT)
    assert not fb and "scale" in fb.message
    fb = nb03.check_scale_zero_point(SCALE, ZERO_POINT + 0.4)
    assert not fb and "integer" in fb.message
    fb = nb03.check_scale_zero_point(SCALE, ZERO_POINT + 1)
    assert not fb and "scale is right" in fb.message
    for bad in NOT_NUMBERS:
        assert not nb03.check_scale_zero_point(bad, ZERO_POINT)


@pytest.mark.parametrize("code", numeric_forms(round(0.4 / (1.8 / 7))))
def test_symmetric_code_accepts_every_numeric_form(code):
    assert nb03.check_symmetric_code(1.8 / 7, code)


def test_symmetric_code_rejects_wrong_answers():
    fb = nb03.check_symmetric_code(1.8 / 7.5, 2)
    assert not fb and "qmax" in fb.message
    fb = nb03.check_symmetric_code(1.8 / 7, 1)  # truncated instead of rounded
    assert not fb and "round" in fb.message
    assert not nb03.check_symmetric_code(None, None)


def _ratio(bits):
    x = sample_tensor("relu")
    return roundtrip(x, bits, True)[1]["mse"] / roundtrip(x, bits, False)[1]["mse"]


@pytest.mark.parametrize("ratio", numeric_forms(_ratio(4)))
def test_relu_ratio_accepts_every_numeric_form(ratio):
    assert nb03.check_relu_ratio(ratio)


def test_relu_ratio_answers_the_question_it_asks():
    """The exercise asks: closer to 4 than at 8 bits? why not exactly 4? The Correct! message answers both."""
    message = nb03.check_relu_ratio(_ratio(4)).message
    closer = abs(_ratio(4) - 4) < abs(_ratio(8) - 4)
    assert ("closer to 4" if closer else "further from 4") in message
    assert f"{_ratio(8):.2f}" in message and "15 / 7" in message


def test_relu_ratio_rejects_wrong_answers():
    fb = nb03.check_relu_ratio(1 / _ratio(4))
    assert not fb and "other way round" in fb.message
    assert not nb03.check_relu_ratio(4.0)
    assert not nb03.check_relu_ratio(_ratio(8))
    for bad in NOT_NUMBERS:
        assert not nb03.check_relu_ratio(bad)
