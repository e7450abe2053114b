"""The course's one policy for judging answers (qlearn.exercises._feedback): numbers by the precision they carry,
tensors in float64 with a tolerance set by the dtype they were computed in."""

import numpy as np
import pytest
import torch

from qlearn.exercises._feedback import Mistake, check_number, digits_needed, read_number, tensors_close

MISTAKE = Mistake(4.0625, "the mistake")


def judge(answer, expected=4.06353, mistakes=(MISTAKE,)):
    return check_number(answer, expected, right_message="right", wrong_message="wrong", not_a_number="no number",
                        mistakes=mistakes)


@pytest.mark.parametrize("answer", [4.06353, 4.0635, 4.064, np.float64(4.0635), torch.tensor(4.0635),
                                    torch.tensor(4.06353, dtype=torch.float64), np.float32(4.0635)],
                         ids=["exact", "4-decimals", "rounded-twice", "numpy", "float32", "float64", "np.float32"])
def test_an_answer_that_pins_the_right_value_is_right(answer):
    assert judge(answer)


@pytest.mark.parametrize("answer", [4.063, 4.06, 4, torch.tensor(4.0635, dtype=torch.bfloat16),
                                    torch.tensor(4.0635, dtype=torch.float16)],
                         ids=["3-decimals", "2-decimals", "int", "bfloat16", "float16"])
def test_an_answer_too_coarse_to_exclude_a_mistake_asks_for_digits(answer):
    fb = judge(answer)
    assert not fb and ("significant digits" in fb.message or fb.message == "wrong")


def test_the_digits_asked_for_are_enough():
    assert digits_needed(4.06353, [4.0625]) == 4  # 4.064: correctly rounded, it excludes 4.0625
    assert judge(float(f"{4.06353:.4g}"))
    fb = judge(4.063)  # 4 digits too, but truncated: it could be 4.0625 rounded half up
    assert not fb and "give 5 significant digits" in fb.message
    assert not judge(4.06) and "give 4 significant digits" in judge(4.06).message


@pytest.mark.parametrize("answer", [4.0625, 4.062, torch.tensor(4.0625)], ids=["exact", "rounded", "tensor"])
def test_an_answer_that_only_fits_a_mistake_gets_its_hint(answer):
    fb = judge(answer)
    assert not fb and fb.message == "the mistake"


@pytest.mark.parametrize("answer", [None, "4.0635", True, float("nan"), float("inf"), [4.0635],
                                    torch.tensor([4.0, 4.1]), torch.tensor(True), 1j],
                         ids=["None", "str", "bool", "nan", "inf", "list", "2-elements", "bool-tensor", "complex"])
def test_what_is_not_a_number(answer):
    fb = judge(answer)
    assert not fb and fb.message == "no number"


def test_integers_are_exact():
    assert read_number(297).halfwidth == 0
    assert judge(297, expected=297, mistakes=()) and not judge(296, expected=297, mistakes=())
    assert judge(np.int64(297), expected=297, mistakes=()) and judge(297.0, expected=297, mistakes=())
    assert judge(torch.tensor(297), expected=297, mistakes=())


def test_a_float_answer_stands_for_what_rounds_to_it():
    assert read_number(4.064).halfwidth == pytest.approx(0.00055)
    assert read_number(np.float32(0.031)).halfwidth == pytest.approx(0.00055)
    assert read_number(torch.tensor(3.0, dtype=torch.bfloat16)).halfwidth >= 2 ** -7 * 3 - 1e-12


def test_tolerance_of_the_expected_value_widens_the_window():
    assert not judge(4.0636, mistakes=())
    assert check_number(4.0636, 4.06353, tolerance=1e-4, right_message="", wrong_message="", not_a_number="")


REFERENCE = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)


@pytest.mark.parametrize("answer", [REFERENCE, REFERENCE.float(), REFERENCE.bfloat16(), REFERENCE.half(),
                                    REFERENCE.numpy(), REFERENCE.tolist(), REFERENCE.float() + 1e-7],
                         ids=["float64", "float32", "bfloat16", "float16", "numpy", "list", "float32-residue"])
def test_tensor_answers_in_every_form(answer):
    assert tensors_close(answer, REFERENCE)


@pytest.mark.parametrize("answer", [REFERENCE * 1.05, REFERENCE.T, REFERENCE[0], REFERENCE.float() + 1e-3,
                                    REFERENCE.bfloat16() * 1.1, "abc", None, REFERENCE * float("nan")],
                         ids=["5%-off", "transposed", "shape", "float32-1e-3", "bfloat16-10%", "str", "None", "nan"])
def test_tensor_answers_that_differ(answer):
    assert not tensors_close(answer, REFERENCE)


def test_a_count_is_exact_and_a_coarse_form_of_it_is_asked_for_digits():
    def count(answer):
        return check_number(answer, 297, right_message="right", wrong_message="wrong", not_a_number="no", count=True)

    assert count(297) and count(297.0) and count(torch.tensor(297.0))
    assert not count(296) and not count(298)
    fb = count(torch.tensor(297, dtype=torch.bfloat16))  # bfloat16 holds 296 or 298, never 297
    assert not fb and "bfloat16 cannot hold 297" in fb.message
    assert check_number(torch.tensor(256, dtype=torch.bfloat16), 256, right_message="", wrong_message="",
                        not_a_number="", count=True)  # held exactly: right
