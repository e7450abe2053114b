"""Knowledge distillation: train a small student on a large teacher's softened outputs.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network". The teacher's
probabilities at a temperature T > 1 show which wrong classes it finds plausible (a 3 that
looks a bit like an 8); the student learns from those soft targets plus the true labels:

    p_T = softmax(z_teacher / T),   q_T = softmax(z_student / T)
    L = alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(softmax(z_student), y)

Why T^2: d KL / d z_student = (q_T - p_T) / T, and for large T, q_T - p_T is about
(z_student - z_teacher) / (n_classes * T), so the soft gradient shrinks like 1 / T^2.
Multiplying by T^2 keeps the two terms' balance (alpha) the same whatever T is.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..data.digits import Digits, train

__all__ = ["distill", "distillation_loss", "soft_target_loss"]


def _check_temperature(T) -> float:
    if isinstance(T, bool) or not isinstance(T, (int, float)):
        raise TypeError(f"T (temperature) must be a positive number, got {T!r}")
    if not T > 0 or math.isinf(T):
        raise ValueError(f"T (temperature) must be positive and finite, got {T}")
    return float(T)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number from 0 to 1 (the weight of the soft loss), got {alpha!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be from 0 to 1 (the weight of the soft loss), got {alpha}")
    return float(alpha)


def _check_logits(z, name: str) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of logits (batch, classes), got "
                        f"{type(z).__name__ if not isinstance(z, torch.Tensor) else z.dtype}")
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"{name} must have shape (batch, classes) with batch >= 1 and classes >= 2, got "
                         f"{tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return z


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 4.0,
                     scale_by_T2: bool = True) -> torch.Tensor:
    """T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the batch (no T^2 if scale_by_T2=False).

    The teacher's logits are detached: only the student learns. Shapes: (batch, classes) x 2 -> scalar.
    """
    T = _check_temperature(T)
    _check_logits(student_logits, "student_logits")
    _check_logits(teacher_logits, "teacher_logits")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not isinstance(scale_by_T2, bool):
        raise TypeError(f"scale_by_T2 must be True or False, got {scale_by_T2!r}")
    log_q = F.log_softmax(student_logits / T, dim=-1)  # (batch, classes)
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)  # (batch, classes)
    if not bool(torch.isfinite(teacher_logits).all()):
        raise ValueError(f"teacher_logits overflow student_logits' dtype {student_logits.dtype}; pass logits in the "
                         "student's range")
    log_p = F.log_softmax(teacher_logits / T, dim=-1)  # (batch, classes)
    kl = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    return kl * T * T if scale_by_T2 else kl


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                      T: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton's loss: alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(z_student, y).

    Shapes: student_logits, teacher_logits (batch, classes), y (batch,) int64 -> scalar.
    """
    alpha = _check_alpha(alpha)
    soft = soft_target_loss(student_logits, teacher_logits, T)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != student_logits.shape[:1]:
        raise TypeError(f"y must be an int64 tensor of class labels with shape ({student_logits.shape[0]},)")
    if bool((y < 0).any()) or bool((y >= student_logits.shape[1]).any()):
        raise ValueError(f"labels y must lie in 0..{student_logits.shape[1] - 1}")
    hard = F.cross_entropy(student_logits, y)
    return alpha * soft + (1.0 - alpha) * hard


def distill(student: nn.Module, teacher: nn.Module, data: Digits, T: float = 4.0, alpha: float = 0.9,
            epochs: int = 30, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
            progress: bool = False) -> list[float]:
    """Train `student` in place on `distillation_loss` against a frozen `teacher`. Returns the loss per epoch.

    The teacher runs in eval mode without gradients on each training batch; the loop (seeded
    shuffling, Adam, a tqdm bar with progress=True) is `digits.train`.
    """
    for name, m in (("student", student), ("teacher", teacher)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    if student is teacher:
        raise ValueError("student and teacher must be different models (copy the teacher to start from it)")
    T, alpha = _check_temperature(T), _check_alpha(alpha)
    was_training = teacher.training
    teacher.eval()

    def loss_fn(logits, X, y):
        with torch.no_grad():
            teacher_logits = teacher(X)  # (batch, classes)
        return distillation_loss(logits, teacher_logits, y, T, alpha)

    try:
        return train(student, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                     loss_fn=loss_fn, progress=progress)
    finally:
        teacher.train(was_training)
