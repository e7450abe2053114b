"""Notebook 10's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest
import torch

from qlearn.exercises import nb10
from qlearn.methods.lora import LoRALinear

from .answer_forms import NOT_NUMBERS, computed_forms, numeric_forms, rounded


@pytest.mark.parametrize("answer", numeric_forms(8 * (576 + 1536)))
def test_lora_param_count_right(answer):
    assert nb10.check_lora_param_count(answer)


@pytest.mark.parametrize("answer, hint", [(1536 * 576, "full weight"), (8 * 576, "only one"), (8 * 1536, "only one"),
                                          (12345, "not it")], ids=["full-W", "only-A", "only-B", "other"])
def test_lora_param_count_mistakes(answer, hint):
    feedback = nb10.check_lora_param_count(answer)
    assert not feedback and hint in feedback.message


GB = 7e9 * (4 + 8 / 64 + 32 / (64 * 256)) / 8 / 1e9  # the exercise's answer, 3.6111 GB


@pytest.mark.parametrize("answer", [*computed_forms(GB)[:6], pytest.param(rounded(GB, 4), id="3-decimals"),
                                    pytest.param(3.6111, id="4-decimals"),
                                    pytest.param(torch.tensor([GB]), id="tensor-1")])
def test_qlora_base_gb_right(answer):
    assert nb10.check_qlora_base_gb(answer)


@pytest.mark.parametrize("answer, hint", [(3.5, "4 bits alone"), (3.9375, "float32 absmax"), (14.0, "fp16"),
                                          (GB * 1e9, "units"), (GB * 8, "units"), (GB * 1e9 / 2**30, "units"),
                                          (7e9 * (4 + 8 / 64) / 8 / 1e9, "forgot the float32 scale"),
                                          (3.609, "forgot the float32 scale"), (3.6, "significant digits"),
                                          (3.61, "significant digits"), (3.62, "not it"),
                                          (torch.tensor(GB, dtype=torch.bfloat16), "significant digits")],
                         ids=["4-bit", "no-dq", "fp16", "bytes", "bits", "GiB", "no-second-scale",
                              "no-second-scale-3dp", "2-digits", "3-digits", "off", "bfloat16"])
def test_qlora_base_gb_mistakes(answer, hint):
    feedback = nb10.check_qlora_base_gb(answer)
    assert not feedback and hint in feedback.message


@pytest.mark.parametrize("answer", NOT_NUMBERS, ids=[repr(a)[:12] for a in NOT_NUMBERS])
def test_numeric_checks_reject_non_numbers(answer):
    assert not nb10.check_lora_param_count(answer)
    assert not nb10.check_qlora_base_gb(answer)


def _lora(x, W, A, B, alpha, r):
    return x @ W.T + (alpha / r) * (x @ A.T @ B.T)


def _with_qlearn(x, W, A, B, alpha, r):  # the package's layer, with A and B copied in
    base = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    base.weight.data.copy_(W)
    layer = LoRALinear(base, r=r, alpha=alpha)
    layer.lora_A.data.copy_(A)
    layer.lora_B.data.copy_(B)
    return layer(x).detach()


LORA_RIGHT = {"solution": _lora, "qlearn-layer": _with_qlearn,
              "merged-first": lambda x, W, A, B, alpha, r: x @ (W + (alpha / r) * B @ A).T,
              "float64": lambda x, W, A, B, alpha, r: _lora(x.double(), W.double(), A.double(), B.double(), alpha, r),
              "bfloat16": lambda x, W, A, B, alpha, r: _lora(*(t.bfloat16() for t in (x, W, A, B)), alpha, r),
              "float16-result": lambda x, W, A, B, alpha, r: _lora(x, W, A, B, alpha, r).half(),
              "numpy": lambda x, W, A, B, alpha, r: _lora(x, W, A, B, alpha, r).numpy()}


@pytest.mark.parametrize("fn", LORA_RIGHT.values(), ids=LORA_RIGHT.keys())
def test_lora_forward_right(fn):
    assert nb10.check_lora_forward(fn)


@pytest.mark.parametrize("fn, hint", [
    (lambda x, W, A, B, alpha, r: x @ W.T + x @ A.T @ B.T, "missing its scaling"),
    (lambda x, W, A, B, alpha, r: x @ W.T + (r / alpha) * (x @ A.T @ B.T), "not r / alpha"),
    (lambda x, W, A, B, alpha, r: x @ W.T, "differs"),
    (lambda x, W, A, B, alpha, r: x @ W.T + alpha * (x @ A.T @ B.T), "differs"),
    (lambda x, W, A, B, alpha, r: x @ W.T + (alpha / r) * (x @ A.T @ B.T) * 1.01, "differs"),
    (lambda x, W, A, B, alpha, r: _lora(*(t.bfloat16() for t in (x, W, A, B)), alpha, r) * 1.2, "differs"),
    (lambda x, W, A, B, alpha, r: W, "shape"),
    (lambda x, W, A, B, alpha, r: x @ A @ B, "raised"),
    ("not a function", "function itself"),
], ids=["no-scaling", "inverse-scaling", "no-update", "alpha-only", "1%-off", "bfloat16-20%-off", "wrong-shape",
        "raises", "not-callable"])
def test_lora_forward_mistakes(fn, hint):
    feedback = nb10.check_lora_forward(fn)
    assert not feedback and hint in feedback.message
