"""How far a reconstruction x_hat is from the original x: four numbers, all returned as Python floats."""

from __future__ import annotations

import math

import torch

from .validation import check_float_tensor, check_same_shape


def _pair(x, x_hat):
    check_float_tensor(x, "x")
    check_float_tensor(x_hat, "x_hat")
    check_same_shape(x, x_hat, ("x", "x_hat"))
    return x.detach().double(), x_hat.detach().to(x.device).double()


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error: mean((x - x_hat)^2). Shapes: x, x_hat (...) -> float."""
    x, x_hat = _pair(x, x_hat)
    return float((x - x_hat).square().mean())


def max_abs_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Largest absolute error: max |x - x_hat|. Shapes: x, x_hat (...) -> float."""
    x, x_hat = _pair(x, x_hat)
    return float((x - x_hat).abs().max())


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum x^2 / sum (x - x_hat)^2).

    Higher is better; each extra bit adds about 6 dB. An exact reconstruction gives
    +inf; an all-zero signal with non-zero error gives -inf.
    Shapes: x, x_hat (...) -> float.
    """
    x, x_hat = _pair(x, x_hat)
    signal, noise = float(x.square().sum()), float((x - x_hat).square().sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine_similarity(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Cosine of the angle between x and x_hat, both flattened: <x, x_hat> / (|x| |x_hat|).

    Shapes: x, x_hat (...) -> float in [-1, 1]. Raises ValueError if either is all zeros.
    """
    x, x_hat = _pair(x, x_hat)
    nx, ny = float(x.norm()), float(x_hat.norm())
    if nx == 0.0 or ny == 0.0:
        raise ValueError("cosine similarity is undefined for an all-zero tensor")
    return float((x.flatten() @ x_hat.flatten()) / (nx * ny))
