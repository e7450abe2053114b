"""Notebook 02's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest
import torch

import qlearn
from qlearn.exercises import nb02

from .answer_forms import NOT_NUMBERS, numeric_forms

X = torch.tensor([-0.8, 0.1, 2.4, 3.3])
LO, HI = -0.8, 3.3
SCALE = (HI - LO) / 255
ZERO_POINT = round(-128 - LO / SCALE)


@pytest.mark.parametrize("zero_point", numeric_forms(ZERO_POINT))
def test_scale_and_zero_point_accept_every_numeric_form(zero_point):
    assert nb02.check_scale_and_zero_point(X, SCALE, zero_point)
    assert nb02.check_scale_and_zero_point(X, torch.tensor(SCALE), zero_point)


def test_scale_and_zero_point_reject_wrong_answers():
    fb = nb02.check_scale_and_zero_point(X, SCALE, ZERO_POINT + 1)
    assert not fb and "zero_point" in fb.message and "scale is right" in fb.message
    fb = nb02.check_scale_and_zero_point(X, 2 * SCALE, ZERO_POINT)
    assert not fb and "scale" in fb.message
    for bad in NOT_NUMBERS:
        assert not nb02.check_scale_and_zero_point(X, bad, ZERO_POINT)


CODES = torch.tensor([-8, -3, 0, 7], dtype=torch.int8)


def test_dequantized():
    assert nb02.check_dequantized(CODES, 0.25, -3, 0.25 * (CODES.float() + 3))
    assert nb02.check_dequantized(CODES, 0.25, -3, (0.25 * (CODES.float() + 3)).double())
    fb = nb02.check_dequantized(CODES, 0.25, -3, 0.25 * CODES.float() - 3)  # multiplied before subtracting
    assert not fb and "BEFORE" in fb.message
    fb = nb02.check_dequantized(CODES, 0.25, -3, (CODES + 3) // 4)  # integer arithmetic
    assert not fb and "float" in fb.message
    assert not nb02.check_dequantized(CODES, 0.25, -3, torch.zeros(3))
    assert not nb02.check_dequantized(CODES, 0.25, -3, [-1.25, 0.0, 0.75, 2.5])


def _fewest_bits(W, target):
    for bits in range(2, 9):
        qp = qlearn.choose_qparams(W, bits=bits)
        if qlearn.core.metrics.sqnr_db(W, qlearn.dequantize(qlearn.quantize(W, qp), qp)) >= target:
            return bits
    raise AssertionError("no width reaches the target")


W = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
BEST = _fewest_bits(W, 30.0)


@pytest.mark.parametrize("answer", numeric_forms(BEST))
def test_min_bits_accepts_every_numeric_form(answer):
    """02 Ex3 answered as 8.0 or tensor(8) is right."""
    assert nb02.check_min_bits(W, 30.0, answer)


def test_min_bits_rejects_wrong_answers_with_true_messages():
    fb = nb02.check_min_bits(W, 30.0, BEST - 1)
    assert not fb and "only" in fb.message
    fb = nb02.check_min_bits(W, 30.0, BEST + 1)
    assert not fb and "fewer bits do too" in fb.message
    fb = nb02.check_min_bits(W, 30.0, 1)  # answering 1 must not claim that 1 bit reaches the target
    assert not fb and "reach" not in fb.message and "2 to 8" in fb.message
    fb = nb02.check_min_bits(W, 30.0, 9)
    assert not fb and "2 to 8" in fb.message
    fb = nb02.check_min_bits(W, 30.0, BEST + 0.5)
    assert not fb and "whole number" in fb.message
    for bad in NOT_NUMBERS:
        assert not nb02.check_min_bits(W, 30.0, bad)
