"""Notebook 01's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest
import torch
from torch import nn

from qlearn.exercises import Feedback, nb01

from .answer_forms import NOT_NUMBERS, numeric_forms


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # float params and buffers, and an int64 counter


def _bf16_bytes(model):
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in tensors)


@pytest.mark.parametrize("answer", numeric_forms(_bf16_bytes(_model())))
def test_memory_bytes_accepts_every_numeric_form(answer):
    fb = nb01.check_memory_bytes(_model(), answer)
    assert isinstance(fb, Feedback) and fb and repr(fb).startswith("Correct!")


def test_memory_bytes_accepts_the_notebook_answer_as_a_tensor():
    """01 Ex1 answered as tensor(45434624): a sum of tensor numel products is a 0-d int64 tensor."""
    model = _model()
    as_tensor = sum(torch.tensor(t.numel()) * (2 if t.is_floating_point() else t.element_size())
                    for t in list(model.parameters()) + list(model.buffers()))
    assert isinstance(as_tensor, torch.Tensor) and nb01.check_memory_bytes(model, as_tensor)


def test_memory_bytes_rejects_wrong_answers_and_says_why():
    model = _model()
    fp32 = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    fb = nb01.check_memory_bytes(model, fp32)
    assert not fb and "float32" in fb.message
    fb = nb01.check_memory_bytes(model, _bf16_bytes(model) - 8)
    assert not fb and "off by +8" not in fb.message and "-8" in fb.message
    for bad in NOT_NUMBERS:
        assert not nb01.check_memory_bytes(model, bad)


def test_smallest_safe_dtype():
    assert nb01.check_smallest_safe_dtype(100_000.0, "bfloat16")
    assert nb01.check_smallest_safe_dtype(100_000.0, torch.bfloat16)
    assert nb01.check_smallest_safe_dtype(100.0, torch.float8_e4m3fn)
    fb = nb01.check_smallest_safe_dtype(100_000.0, "float16")
    assert not fb and "overflows" in fb.message
    assert not nb01.check_smallest_safe_dtype(100_000.0, "float32")
    assert not nb01.check_smallest_safe_dtype(100_000.0, ["bfloat16"])
    assert not nb01.check_smallest_safe_dtype(100_000.0, None)


@pytest.mark.parametrize("answer", numeric_forms(2.0 ** -7))
def test_machine_epsilon_accepts_every_numeric_form(answer):
    assert nb01.check_machine_epsilon("bfloat16", answer)


def test_machine_epsilon_accepts_the_hints_bf16_tensor():
    """01 Ex3 answered with the hint's torch.nextafter, without .item(): a bf16 0-d tensor."""
    one = torch.tensor(1.0, dtype=torch.bfloat16)
    gap = torch.nextafter(one, one + 1) - one
    assert gap.dtype == torch.bfloat16 and gap.dim() == 0
    assert nb01.check_machine_epsilon("bfloat16", gap)


def test_machine_epsilon_rejects_wrong_answers():
    assert not nb01.check_machine_epsilon("bfloat16", 2.0 ** -10)  # fp16's
    fb = nb01.check_machine_epsilon("bfloat16", 1 + 2.0 ** -7)  # the next number, not the gap
    assert not fb and "gap" in fb.message
    for bad in NOT_NUMBERS:
        fb = nb01.check_machine_epsilon("bfloat16", bad)
        assert not fb and repr(fb).startswith("Not yet")
