"""Notebook 10's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest
import torch

from .answer_forms import NOT_NUMBERS, numeric_forms
from qlearn.exercises import nb10
from qlearn.methods.lora import LoRALinear


@pytest.mark.parametrize("answer", numeric_forms(8 * (576 + 1536)))
def test_lora_param_count_right(answer):
    assert nb10.check_lora_param_count(answer)


@pytest.mark.parametrize("answer, hint", [(1536 * 576, "full weight"), (8 * 576, "only one"), (8 * 1536, "only one"),
                                          (12345, "not it")], ids=["full-W", "only-A", "only-B", "other"])
def test_lora_param_count_mistakes(answer, hint):
    feedback = nb10.check_lora_param_count(answer)
    assert not feedback and hint in feedback.message


@pytest.mark.parametrize("answer", [*numeric_forms(3.6109375), pytest.param(3.6, id="rounded")])
def test_qlora_base_gb_right(answer):
    assert nb10.check_qlora_base_gb(answer)


@pytest.mark.parametrize("answer, hint", [(3.5, "4 bits alone"), (3.9375, "float32 absmax"), (14.0, "not it"),
                                          (3.6109375e9, "units")], ids=["4-bit", "no-dq", "fp16", "bytes"])
def test_qlora_base_gb_mistakes(answer, hint):
    feedback = nb10.check_qlora_base_gb(answer)
    assert not feedback and hint in feedback.message


@pytest.mark.parametrize("answer", NOT_NUMBERS, ids=[repr(a)[:12] for a in NOT_NUMBERS])
def test_numeric_checks_reject_non_numbers(answer):
    assert not nb10.check_lora_param_count(answer)
    assert not nb10.check_qlora_base_gb(answer)


def test_lora_forward_right():
    assert nb10.check_lora_forward(lambda x, W, A, B, alpha, r: x @ W.T + (alpha / r) * (x @ A.T @ B.T))

    def with_qlearn(x, W, A, B, alpha, r):  # the package's layer, with A and B copied in
        base = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
        base.weight.data.copy_(W)
        layer = LoRALinear(base, r=r, alpha=alpha)
        layer.lora_A.data.copy_(A)
        layer.lora_B.data.copy_(B)
        return layer(x).detach()

    assert nb10.check_lora_forward(with_qlearn)


@pytest.mark.parametrize("fn, hint", [
    (lambda x, W, A, B, alpha, r: x @ W.T + x @ A.T @ B.T, "missing its scaling"),
    (lambda x, W, A, B, alpha, r: x @ W.T + (r / alpha) * (x @ A.T @ B.T), "not r / alpha"),
    (lambda x, W, A, B, alpha, r: x @ W.T, "differs"),
    (lambda x, W, A, B, alpha, r: W, "shape"),
    (lambda x, W, A, B, alpha, r: x @ A @ B, "raised"),
    ("not a function", "function itself"),
], ids=["no-scaling", "inverse-scaling", "no-update", "wrong-shape", "raises", "not-callable"])
def test_lora_forward_mistakes(fn, hint):
    feedback = nb10.check_lora_forward(fn)
    assert not feedback and hint in feedback.message
