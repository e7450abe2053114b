"""Notebook 07's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import math

import pytest
import torch

from qlearn.compression.distill import soft_target_loss
from qlearn.compression.prune import magnitude_prune
from qlearn.compression.schedules import sparsity_schedule
from qlearn.exercises import nb07

from .answer_forms import numeric_forms


def _largest_removed(W, s):
    k = math.floor(s * W.numel())
    out = W.clone().flatten()
    out[out.abs().argsort(descending=True)[:k]] = 0
    return out.reshape(W.shape)


def _rounds_instead_of_floor(W, s):
    k = round(s * W.numel())
    out = W.clone().flatten()
    out[out.abs().argsort()[:k]] = 0
    return out.reshape(W.shape)


def _in_place(W, s):
    k = math.floor(s * W.numel())
    flat = W.view(-1)  # a view: writing into it changes W
    flat[flat.abs().argsort()[:k]] = 0
    return W


def test_magnitude_prune_accepts_a_copy():
    assert nb07.check_magnitude_prune(magnitude_prune)
    assert nb07.check_magnitude_prune(lambda W, s: magnitude_prune(W, s).clone())


@pytest.mark.parametrize("fn, says", [
    (_largest_removed, "smallest"), (_rounds_instead_of_floor, "floor"), (_in_place, "copy"),
    (lambda W, s: W if s == 0 else magnitude_prune(W, s), "copy"),  # returns W itself at sparsity 0
    (lambda W, s: 1 / 0, "ZeroDivisionError"), (lambda W, s: None, "tensor"),
], ids=["largest-removed", "round", "in-place", "returns-W", "raises", "returns-None"])
def test_magnitude_prune_rejects_known_mistakes(fn, says):
    fb = nb07.check_magnitude_prune(fn)
    assert not fb and says in fb.message


def test_magnitude_prune_rejects_a_non_function():
    assert not nb07.check_magnitude_prune("magnitude_prune")


def _grad_norm(T, scale):
    z_s, z_t = nb07.t_squared_example()
    z_s.requires_grad_(True)
    soft_target_loss(z_s, z_t, T, scale_by_T2=scale).backward()
    return float(z_s.grad.norm())


@pytest.mark.parametrize("ratio", [p for p in numeric_forms(_grad_norm(2.0, False) / _grad_norm(8.0, False))
                                   if p.id not in ("tensor-bfloat16", "tensor-float16")])
def test_t_squared_ratio_accepts_every_numeric_form(ratio):
    assert nb07.check_t_squared_ratio(ratio)


def test_t_squared_ratio_accepts_a_float32_tensor():
    assert nb07.check_t_squared_ratio(torch.tensor(_grad_norm(2.0, False)) / torch.tensor(_grad_norm(8.0, False)))


def test_t_squared_ratio_rejects_wrong_answers():
    kept = _grad_norm(2.0, True) / _grad_norm(8.0, True)  # kept the T^2 factor
    fb = nb07.check_t_squared_ratio(kept)
    assert not fb and "scale_by_T2=False" in fb.message
    assert not nb07.check_t_squared_ratio("16")
    assert not nb07.check_t_squared_ratio(None)


def test_schedule_accepts_python_numbers_and_tensors():
    assert nb07.check_schedule(lambda t, s_f, n: sparsity_schedule(t, s_f, n))
    assert nb07.check_schedule(lambda t, s_f, n: s_f * (1 - (1 - t / n) ** 3))
    assert nb07.check_schedule(lambda t, s_f, n: s_f * (1 - (1 - torch.tensor(t) / n) ** 3))  # float32 tensor


def test_schedule_rejects_wrong_answers_with_a_readable_message():
    fb = nb07.check_schedule(lambda t, s_f, n: s_f * t / n)  # linear, not cubic
    assert not fb and "expected" in fb.message
    got, want = fb.message.split("you return ")[1].split(", expected ")
    assert got != want.rstrip()  # the two printed numbers differ
    fb = nb07.check_schedule(lambda t, s_f, n: torch.tensor(s_f * t / n))
    assert not fb and "expected" in fb.message
    assert not nb07.check_schedule(lambda t, s_f, n: "0.5")
    assert not nb07.check_schedule(lambda t, s_f, n: 1 / 0)
    assert not nb07.check_schedule(3)
