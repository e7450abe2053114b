"""Notebook 05's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest
import torch

from qlearn.exercises import nb05

from .answer_forms import NOT_NUMBERS, numeric_forms

N = 4096 * 4096
INT4_BYTES = N // 2 + 4096 * (4096 // 128) * (4 + 1)  # packed codes + a float32 scale and an int8 zero point per group


@pytest.mark.parametrize("answer", numeric_forms(INT4_BYTES))
def test_int4_bytes_accepts_every_numeric_form(answer):
    assert nb05.check_int4_bytes(answer)


def test_int4_bytes_rejects_wrong_answers():
    assert not nb05.check_int4_bytes(N // 2)  # codes only
    assert not nb05.check_int4_bytes(N // 2 + 4096 * 32 * (2 + 2))  # fp16 scale and zero point
    for bad in NOT_NUMBERS:
        assert not nb05.check_int4_bytes(bad)


def test_pack_pair():
    assert nb05.check_pack_pair(lambda q0, q1: ((q1 + 8) << 4) | (q0 + 8))
    assert nb05.check_pack_pair(lambda q0, q1: torch.tensor(((q1 + 8) << 4) | (q0 + 8), dtype=torch.uint8))
    fb = nb05.check_pack_pair(lambda q0, q1: ((q0 + 8) << 4) | (q1 + 8))  # nibbles swapped
    assert not fb and "high nibble" in fb.message
    fb = nb05.check_pack_pair(lambda q0, q1: (q1 << 4) | q0)  # no +8 offset
    assert not fb and "+8" in fb.message
    fb = nb05.check_pack_pair(lambda q0, q1: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message
    assert not nb05.check_pack_pair(3)


@pytest.mark.parametrize("answer", numeric_forms(9 * N))
def test_naive_traffic_accepts_every_numeric_form(answer):
    assert nb05.check_naive_traffic(answer)


def test_naive_traffic_rejects_wrong_answers():
    assert not nb05.check_naive_traffic(4 * N)  # plain float32
    assert not nb05.check_naive_traffic(5 * N)  # forgot the second read
    for bad in NOT_NUMBERS:
        assert not nb05.check_naive_traffic(bad)
