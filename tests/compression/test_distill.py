"""Tests for qlearn.compression.distill: the Hinton loss against an independent float64 formula, its gradient
against the closed form, the T^2 argument, and the teacher -> student loop on digits."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from qlearn.compression.distill import distill, distillation_loss, soft_target_loss
from qlearn.data import digits
from tests.conftest import DEVICES

pytestmark = pytest.mark.usefixtures("one_thread")


def _logits(seed, batch=8, classes=10, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    return spread * torch.randn(batch, classes, generator=g), spread * torch.randn(batch, classes, generator=g)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.floats(0.5, 20.0), batch=st.integers(1, 6))
def test_soft_loss_is_t2_times_kl_in_float64(seed, T, batch):
    z_s, z_t = _logits(seed, batch)
    p = torch.softmax(z_t.double() / T, dim=-1)
    q = torch.softmax(z_s.double() / T, dim=-1)
    kl = (p * (p.log() - q.log())).sum(dim=-1).mean()  # KL(p || q) per sample, batch mean
    assert float(soft_target_loss(z_s, z_t, T)) == pytest.approx(float(kl) * T * T, rel=1e-4, abs=1e-6)
    assert float(soft_target_loss(z_s, z_t, T, scale_by_T2=False)) == pytest.approx(float(kl), rel=1e-4, abs=1e-6)
    assert float(soft_target_loss(z_s, z_t, T)) >= 0.0
    assert float(soft_target_loss(z_t, z_t, T)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("T", [1.0, 4.0, 10.0], ids=lambda T: f"T={T:g}")
def test_soft_gradient_is_T_times_q_minus_p(T):
    z_s, z_t = _logits(1)
    z_s.requires_grad_(True)
    z_t.requires_grad_(True)
    soft_target_loss(z_s, z_t, T).backward()
    expected = T * (torch.softmax(z_s / T, -1) - torch.softmax(z_t / T, -1)) / z_s.shape[0]
    assert torch.allclose(z_s.grad, expected.detach(), atol=1e-6)
    assert z_t.grad is None  # the teacher does not learn


def test_t_squared_keeps_the_soft_gradient_size_independent_of_T():
    z_s, z_t = _logits(2, spread=1.0)
    z_s, z_t = z_s - z_s.mean(-1, keepdim=True), z_t - z_t.mean(-1, keepdim=True)  # zero-mean logits

    def grad_norm(T, scale):
        z = z_s.clone().requires_grad_(True)
        soft_target_loss(z, z_t, T, scale_by_T2=scale).backward()
        return float(z.grad.norm())

    # Without T^2 the gradient shrinks like 1 / T^2 (doubling T divides it by about 4) ...
    assert grad_norm(10.0, False) / grad_norm(20.0, False) == pytest.approx(4.0, rel=0.05)
    # ... with T^2 it stays about the same, so alpha keeps meaning the same balance.
    assert grad_norm(10.0, True) / grad_norm(20.0, True) == pytest.approx(1.0, rel=0.05)


def test_alpha_blends_soft_and_hard_losses():
    z_s, z_t = _logits(3)
    y = torch.arange(8) % 10
    assert torch.allclose(distillation_loss(z_s, z_t, y, T=3.0, alpha=0.0), F.cross_entropy(z_s, y))
    assert torch.allclose(distillation_loss(z_s, z_t, y, T=3.0, alpha=1.0), soft_target_loss(z_s, z_t, 3.0))
    mix = 0.3 * soft_target_loss(z_s, z_t, 3.0) + 0.7 * F.cross_entropy(z_s, y)
    assert torch.allclose(distillation_loss(z_s, z_t, y, T=3.0, alpha=0.3), mix)


@pytest.fixture(scope="module")
def teacher(data):
    model = digits.mlp(hidden=64, seed=0)
    digits.train(model, data, epochs=10, lr=1e-2)
    return model


def test_distilled_student_matches_teacher_better_than_a_label_trained_one(data, teacher):
    before = copy.deepcopy(teacher.state_dict())
    teacher.train()  # distill must switch it to eval, and restore the mode afterwards
    plain, taught = digits.mlp(16, seed=1), digits.mlp(16, seed=1)
    digits.train(plain, data, epochs=8, lr=1e-2, seed=1)
    losses = distill(taught, teacher, data, T=4.0, alpha=0.9, epochs=8, lr=1e-2, seed=1)
    assert teacher.training
    teacher.eval()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    assert losses[-1] < losses[0]
    with torch.no_grad():
        z_t = teacher(data.X_test)
        gap = {name: float(soft_target_loss(m(data.X_test), z_t, 4.0))
               for name, m in (("plain", plain), ("taught", taught))}
    assert gap["taught"] < gap["plain"]


@pytest.mark.parametrize("call,exc,match", [
    (lambda z, y: soft_target_loss(z, z, T=0), ValueError, "positive"),
    (lambda z, y: soft_target_loss(z, z, T=float("inf")), ValueError, "finite"),
    (lambda z, y: soft_target_loss(z, z, T="4"), TypeError, "temperature"),
    (lambda z, y: soft_target_loss(z, z[:, :5], T=2.0), ValueError, "same shape"),
    (lambda z, y: soft_target_loss(z[0], z[0], T=2.0), ValueError, r"\(batch, classes\)"),
    (lambda z, y: soft_target_loss(z.long(), z, T=2.0), TypeError, "floating-point"),
    (lambda z, y: soft_target_loss(z * float("nan"), z, T=2.0), ValueError, "NaN"),
    (lambda z, y: soft_target_loss(z, z, T=2.0, scale_by_T2=1), TypeError, "scale_by_T2"),
    (lambda z, y: distillation_loss(z, z, y, alpha=1.5), ValueError, "alpha"),
    (lambda z, y: distillation_loss(z, z, y, alpha=None), TypeError, "alpha"),
    (lambda z, y: distillation_loss(z, z, y.float()), TypeError, "int64"),
    (lambda z, y: distillation_loss(z, z, y + 10), ValueError, "0..9"),
    (lambda z, y: distill("student", digits.mlp(8), digits.load_digits()), TypeError, "student"),
    (lambda z, y: distill(digits.mlp(8), None, digits.load_digits()), TypeError, "teacher"),
    (lambda z, y: (lambda m: distill(m, m, digits.load_digits()))(digits.mlp(8)), ValueError, "different"),
], ids=["T-zero", "T-inf", "T-string", "shape-mismatch", "1d-logits", "int-logits", "nan-logits", "T2-flag-int",
        "alpha-1.5", "alpha-none", "float-labels", "labels-out-of-range", "student-str", "teacher-none", "same-model"])
def test_bad_inputs(call, exc, match):
    z, y = _logits(0)[0], torch.arange(8)
    with pytest.raises(exc, match=match):
        call(z, y)


def test_temperature_explorer_and_soft_target_plot():
    from qlearn.plots.compression import soft_targets
    from qlearn.widgets.compression import temperature_explorer

    z = torch.tensor([8.0, 1.0, 0.5, 3.0, -1.0, 0.0, 2.0, -2.0, 4.0, 1.5])
    explorer = temperature_explorer(z, T=1)
    sharp = explorer.last["entropy"]
    explorer.controls["T"].value = 8
    assert explorer.calls == 2 and explorer.last["T"] == 8
    assert explorer.last["entropy"] > sharp  # a higher temperature spreads the probability out
    assert explorer.last["top_probability"] == pytest.approx(float(torch.softmax(z / 8, 0).max()))
    assert len(soft_targets(z, [1, 4]).axes) == 1
    with pytest.raises(ValueError, match="one of"):
        temperature_explorer(z, T=5)
    with pytest.raises(ValueError, match="classes"):
        temperature_explorer(z[None], T=4)
    with pytest.raises(ValueError, match="positive"):
        soft_targets(z, [0])


@pytest.mark.parametrize("device", DEVICES)
def test_distillation_loss_runs_on_the_logits_device(device):
    z_s, z_t = (z.to(device) for z in _logits(4))
    y = torch.arange(8, device=device)
    loss = distillation_loss(z_s.requires_grad_(True), z_t, y)
    loss.backward()
    assert loss.device == z_s.device and z_s.grad.device == z_s.device
