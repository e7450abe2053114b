"""HQQ, Half-Quadratic Quantization (Badri & Shaji 2023, mobiusml.github.io/hqq_blog): a data-free zero-point solver.

Objective, per group: argmin over zero of || W - W_hat ||_p^p with p < 1 (a heavy-tailed loss that lets a
few outliers stay wrong so the bulk is right), W_hat = (round(W s + z) - z) / s with HQQ's inverse scale s.
Splitting with an extra variable W_e (the error) and a quadratic coupling of weight beta gives two
closed-form half-steps, repeated while beta grows:

    W_e  = shrink_p(W - W_hat(z), beta)              generalized soft-thresholding
    z    = mean(W_q - (W - W_e) s)                   over the group, W_q = clamp(round(W s + z), 0, 2^b - 1)
    beta = kappa * beta

The scale stays at its min-max value (as the paper and the package's default). This follows hqq's
`optimize_weights_proximal_v2` (hqq/core/optimize.py): with `early_stop` it stops when the mean
|W - W_hat| stops falling and keeps the best zero. hqq's default solver (`..._legacy`) never grows beta;
this one does, as the paper says. At the file boundary HQQ's (W_q - z) / s with codes 0..2^b - 1 becomes
qlearn's r = scale * (q - zero_point): scale = 1 / s, q = W_q + qmin, zero_point = z + qmin. The zero
point stays a float (the solver moves it off the integer grid), stored as float32.

Model level (`quantize_model(model, method="hqq")`): each Linear becomes an HQQLinear, a QuantLinear that keeps
the float zero point (4 bytes per group instead of 1, counted by model_size_bytes): rounding it to an int8 would
throw the method away. It always runs the reference path (dequantize, then a float matmul), since the fused
kernels are built for integer zero points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.granularity import PerChannel, PerGroup
from ..core.primitives import cast_finite, qrange
from ..core.validation import (
    check_bits,
    check_bool,
    check_float_tensor,
    check_group_size,
    check_inputs,
    check_number,
    check_positive_int,
    check_weight,
)
from ..inference import packing, serialize
from ..inference.linear import QuantLinear
from ..inference.registry import QuantMethod, get_method, register_method
from .weight import UniformWeight, granularity_for, group_size_of

__all__ = ["HQQLinear", "HQQWeight", "quantize_layer", "quantize_weight", "shrink_lp"]


@dataclass(frozen=True, eq=False)
class HQQWeight(UniformWeight):
    """A UniformWeight with a float zero point, and the solver's mean |W - W_hat| at every iteration."""

    history: tuple[float, ...] = ()


def shrink_lp(x: torch.Tensor, beta: float, lp_norm: float) -> torch.Tensor:
    """Generalized soft-thresholding, the proximal step of the lp norm (p <= 1).

    shrink(x) = sign(x) * relu(|x| - |x|^(p - 1) / beta)       (p = 1: the ordinary soft threshold)
    Shapes: x (...) -> (...).
    """
    check_float_tensor(x, "x")
    beta = check_number(beta, "beta", 0.0, low_inclusive=False)
    lp_norm = check_number(lp_norm, "lp_norm", 0.0, low_inclusive=False, high=1.0)
    return _shrink_lp(x, beta, lp_norm)


def _shrink_lp(x: torch.Tensor, beta: float, lp_norm: float) -> torch.Tensor:
    a = x.abs()
    return torch.sign(x) * (a - a.pow(lp_norm - 1) / beta).clamp_min(0.0)


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, bits: int = 4, group_size: int | None = 64,
                    iters: int = 20, lp_norm: float = 0.7, beta: float = 10.0, kappa: float = 1.01,
                    early_stop: bool = True) -> HQQWeight:
    """HQQ: min-max inverse scale, zero point from the half-quadratic lp solver; data-free (X checked, unused).

    repeat iters times: W_e = shrink_p(W - W_hat, beta); z = mean(W_q - (W - W_e) s); beta *= kappa

    Shapes: W (out, in); X (tokens, in) or None -> HQQWeight of W (out, in); history (iterations run,).
    """
    check_weight(W)
    check_inputs(X, W, required=False, method="hqq")
    check_bits(bits)
    granularity = granularity_for(check_group_size(group_size, W.shape[1]))
    check_positive_int(iters, "iters")
    lp_norm = check_number(lp_norm, "lp_norm", 0.0, low_inclusive=False, high=1.0)
    beta = check_number(beta, "beta", 0.0, low_inclusive=False)
    kappa = check_number(kappa, "kappa", 1.0, high=10.0)
    check_bool(early_stop, "early_stop")

    W_f = granularity.to_blocks(W.detach().float())  # (out, in/g, g), or (out, in) per row
    top = 2 ** bits - 1  # HQQ codes are 0..2^b - 1
    w_min, w_max = W_f.amin(dim=-1, keepdim=True), W_f.amax(dim=-1, keepdim=True)  # (out, in/g, 1)
    denom = w_max - w_min
    s = torch.where(denom.abs() <= 1e-4, torch.ones_like(denom), top / denom).clamp(max=2e4)  # inverse scale
    z = -w_min * s  # zero point in HQQ's frame

    history, best, best_z = [], float("inf"), z
    for _ in range(iters):
        W_q = torch.round(W_f * s + z).clamp(0, top)
        W_hat = (W_q - z) / s
        error = float((W_f - W_hat).abs().mean())
        history.append(error)
        if early_stop:
            if best - error > 0:
                best, best_z = error, z
            else:
                z = best_z
                break
        W_e = _shrink_lp(W_f - W_hat, beta, lp_norm)
        z = torch.mean(W_q - (W_f - W_e) * s, dim=-1, keepdim=True)  # (out, in/g, 1) closed form
        beta *= kappa

    qmin, _ = qrange(bits)
    W_q = torch.round(W_f * s + z).clamp(0, top).reshape(W.shape)  # (out, in)
    return HQQWeight.from_codes((W_q + qmin).to(torch.int8), 1.0 / s, z + qmin, bits, granularity, W.dtype,
                                history=tuple(history))


class HQQLinear(QuantLinear):
    """A QuantLinear with `bits`-bit codes and a float32 zero point per group. Build it with `from_weight`.

    W_hat = scale * (W_q - zero_point), Y = X @ W_hat^T + b.
    Shapes: X (..., in) -> Y (..., out); zero_point granularity.stats_shape((out, in)) float32.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 4, granularity=PerGroup(64),
                 bias: bool = True, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(in_features, out_features, bits=bits, granularity=granularity, symmetric=False, bias=bias,
                         kernel="reference", dtype=dtype, device=device)
        self.zero_point = self.zero_point.to(torch.float32)

    @property
    def kernel(self) -> str:
        return "reference"

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in ("auto", "reference"):
            raise ValueError(f"kernel must be 'auto' or 'reference' (HQQLinear always runs the reference), "
                             f"got {value!r}")
        self._cache = None

    @classmethod
    def from_weight(cls, qw: HQQWeight, bias: torch.Tensor | None = None) -> "HQQLinear":
        """The layer that stores `qw` (from hqq.quantize_weight) and `bias` (out,) or None."""
        if not isinstance(qw, HQQWeight):
            raise TypeError(f"qw must be an HQQWeight from hqq.quantize_weight, got {type(qw).__name__}")
        out_features, in_features = qw.shape
        layer = cls(in_features, out_features, bits=qw.bits, granularity=qw.granularity, bias=bias is not None,
                    dtype=qw.dtype, device=qw.W_q.device)
        codes = qw.codes()  # (out, in) int8
        layer.weight_q = codes if qw.bits > 4 else packing.pack(codes, qw.bits)
        layer.scale = qw.scale.detach().to(torch.float32).clone()
        layer.zero_point = qw.zero_point.detach().to(torch.float32).clone()
        if bias is not None:
            with torch.no_grad():
                layer.bias.copy_(bias.detach())
        return layer

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "granularity": self.granularity, "bias": self.bias is not None, "dtype": self.dtype}

    def set_weight(self, W_q, qparams):
        raise TypeError("HQQLinear stores a float zero point: build it with HQQLinear.from_weight(hqq_weight)")

    def qparams(self):
        raise ValueError("HQQLinear has a float zero point; a QParams holds integer zero points only")

    def dequantized_weight(self) -> torch.Tensor:
        """W_hat = scale * (W_q - zero_point), shape (out, in), in the original weight dtype."""
        q = self.granularity.to_blocks(self.codes().float())  # (out, in/g, g) or (out, in)
        W_hat = self.scale * (q - self.zero_point)  # same shape
        return cast_finite(W_hat.reshape(self.out_features, self.in_features), self.dtype)  # (out, in)


# ---- model level ---------------------------------------------------------------------------------------------

def quantize_layer(name, linear, X, bits, granularity, symmetric, iters=20, lp_norm=0.7, beta=10.0, kappa=1.01,
                   early_stop=True) -> HQQLinear:
    """HQQ's codes and float zero point, in an HQQLinear (data-free: X is None).

    Shapes: linear.weight (out, in) -> HQQLinear (out, in).
    """
    get_method("hqq").check_layer(linear, X, bits, granularity, symmetric)
    qw = quantize_weight(linear.weight.detach(), bits=bits, group_size=group_size_of(granularity), iters=iters,
                         lp_norm=lp_norm, beta=beta, kappa=kappa, early_stop=early_stop)
    return HQQLinear.from_weight(qw, linear.bias)


register_method(QuantMethod("hqq", quantize_layer, symmetric=(False,), granularities=(PerChannel, PerGroup),
                            description="HQQ, data-free, float zero point (HQQLinear)"), replace=True)
serialize.register_layer_type(HQQLinear)
