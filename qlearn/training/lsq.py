"""Learned Step Size Quantization (LSQ): the scale is a trained parameter, not a statistic.

Esser, McKinstry, Bablani, Appuswamy, Modha (2020), "Learned Step Size Quantization", ICLR.
Objective: minimise the task loss over both the weights W and the step size s, with

    W_hat = s * round(clamp(W / s, qmin, qmax))                                   (eq. 1-2)
    d W_hat / d s = -W/s + round(W/s)   if qmin < W/s < qmax                       (eq. 3)
                  = qmin                if W/s <= qmin
                  = qmax                if W/s >= qmax
    d W_hat / d W = 1 inside (qmin, qmax), else 0 (the straight-through estimator)
    the gradient of s is multiplied by g = 1 / sqrt(N * qmax), N = weights per scale (sec. 2.2)
    initial s = 2 mean|W| / sqrt(qmax)                                              (sec. 2.1)

Simplified: symmetric (zero_point = 0) only, one s per block of any granularity (the paper
uses one per layer). The forward value is computed by `fake_quantize` itself, so a layer
converted with `QParams(scale=s)` gives bit-identical outputs.
"""

from __future__ import annotations

import math

import torch

from ..core.granularity import Granularity
from ..core.primitives import QParams, fake_quantize, qrange
from ..core.validation import check_bits, check_float_dtype, check_float_tensor

__all__ = ["lsq_fake_quantize", "lsq_init_scale", "lsq_qparams"]


def lsq_init_scale(W: torch.Tensor, bits: int, granularity: Granularity) -> torch.Tensor:
    """The paper's initial step size, per block: s = 2 mean|W| / sqrt(qmax).

    Shapes: W (...) -> s `granularity.stats_shape(W.shape)`.
    """
    from .observers import block_rows

    check_float_tensor(W, "W")
    check_bits(bits)
    rows, stats_shape = block_rows(W.detach().float().abs(), granularity)  # (n_blocks, elements)
    s = 2 * rows.mean(dim=1) / math.sqrt(qrange(bits)[1])  # (n_blocks,)
    return s.clamp(min=torch.finfo(torch.float32).eps).reshape(stats_shape)


def lsq_qparams(scale: torch.Tensor, bits: int, granularity: Granularity, dtype: torch.dtype) -> QParams:
    """The symmetric QParams of a learned step size (detached)."""
    check_float_tensor(scale, "scale")
    check_float_dtype(dtype)
    qmin, qmax = qrange(bits)
    s = scale.detach().float().clamp(min=torch.finfo(torch.float32).eps)
    return QParams(s, torch.zeros_like(s, dtype=torch.int32), bits, True, qmin, qmax, granularity, dtype)


class _LSQ(torch.autograd.Function):
    """Forward: fake_quantize(W) with the step s. Backward: eq. 3 for s (times g), the STE for W."""

    @staticmethod
    def forward(ctx, W, scale, qparams, grad_scale):
        ctx.save_for_backward(W, scale)
        ctx.qparams, ctx.grad_scale = qparams, grad_scale
        return fake_quantize(W.detach(), qparams=qparams)

    @staticmethod
    def backward(ctx, grad_W_hat):
        W, scale = ctx.saved_tensors
        qp = ctx.qparams
        g_blocks = qp.granularity.to_blocks(grad_W_hat.float())  # block view, e.g. (out, in/g, g)
        v = qp.granularity.to_blocks(W.float()) / qp.scale.to(W.device)  # W / s, block view
        below, above = v <= qp.qmin, v >= qp.qmax
        inside = ~(below | above)
        d_s = torch.where(inside, torch.round(v) - v, torch.where(below, float(qp.qmin), float(qp.qmax)))
        dims = qp.granularity.reduce_dims(v.ndim)
        grad_s = (g_blocks * d_s).sum(dim=dims, keepdim=True) * ctx.grad_scale  # stats shape
        grad_W = (g_blocks * inside).reshape(W.shape).to(grad_W_hat.dtype)
        return grad_W, grad_s.reshape(scale.shape).to(scale.dtype), None, None


def lsq_fake_quantize(W: torch.Tensor, scale: torch.Tensor, bits: int, granularity: Granularity) -> torch.Tensor:
    """W_hat = s * round(clamp(W / s, qmin, qmax)) with LSQ gradients for both W and s.

    Shapes: W (...), scale `granularity.stats_shape(W.shape)` -> W_hat (...).
    """
    check_float_tensor(W, "W")
    check_float_tensor(scale, "scale")
    qp = lsq_qparams(scale, bits, granularity, W.dtype)
    qp.check_fits(W.shape, "weight")
    per_scale = W.numel() // scale.numel()
    grad_scale = 1.0 / math.sqrt(per_scale * qp.qmax)
    return _LSQ.apply(W, scale, qp, grad_scale)
