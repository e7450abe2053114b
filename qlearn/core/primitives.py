"""Linear (affine) quantization: choose parameters, quantize, dequantize, fake-quantize.

One convention everywhere:

    r = scale * (q - zero_point)          (dequantize)
    q = clamp(round(r / scale) + zero_point, qmin, qmax)   (quantize)

with integer codes q in the signed range [qmin, qmax] = [-2^(b-1), 2^(b-1) - 1], stored
as int8 for every b in 2..8. One generic path serves every granularity: the tensor is
reshaped into blocks (see `granularity.py`) and min / max are reduced per block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .granularity import Granularity, PerTensor, check_granularity
from .validation import check_bits, check_bool, check_float_dtype, check_float_tensor

__all__ = ["CODE_DTYPE", "QParams", "cast_finite", "choose_qparams", "dequantize", "fake_quantize", "minmax_params",
           "qrange", "quantize"]

CODE_DTYPE = torch.int8


def qrange(bits: int) -> tuple[int, int]:
    """The signed integer range of `bits`-bit codes: (-2^(bits-1), 2^(bits-1) - 1)."""
    check_bits(bits)
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


@dataclass(frozen=True, eq=False)
class QParams:
    """Everything needed to map between floats and integer codes for one tensor.

    Shapes: `scale` (float32) and `zero_point` (int32) both have
    `granularity.stats_shape(x.shape)`: (1, ..., 1) per tensor, (out, 1) per channel of a
    weight (out, in), (out, in / g, 1) per group of g.
    `dtype` is the float dtype `dequantize` returns (the dtype of the original tensor).
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    bits: int
    symmetric: bool
    qmin: int
    qmax: int
    granularity: Granularity = field(default_factory=PerTensor)
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        check_bits(self.bits)
        check_bool(self.symmetric, "symmetric")
        check_granularity(self.granularity)
        if (self.qmin, self.qmax) != qrange(self.bits):
            raise ValueError(f"qmin, qmax must be {qrange(self.bits)} for {self.bits} bits, got "
                             f"({self.qmin}, {self.qmax})")
        if not isinstance(self.scale, torch.Tensor) or not self.scale.is_floating_point():
            raise TypeError("scale must be a floating-point tensor")
        if not isinstance(self.zero_point, torch.Tensor) or self.zero_point.is_floating_point():
            raise TypeError("zero_point must be an integer tensor")
        if self.scale.shape != self.zero_point.shape:
            raise ValueError(f"scale {tuple(self.scale.shape)} and zero_point {tuple(self.zero_point.shape)} "
                             "must have the same shape")
        if not bool((self.scale > 0).all()) or not bool(torch.isfinite(self.scale).all()):
            raise ValueError("every scale must be positive and finite")
        if bool((self.zero_point < self.qmin).any()) or bool((self.zero_point > self.qmax).any()):
            raise ValueError(f"every zero_point must lie in [{self.qmin}, {self.qmax}]")
        if self.symmetric and bool((self.zero_point != 0).any()):
            raise ValueError("a symmetric QParams must have zero_point == 0")
        check_float_dtype(self.dtype)

    def check_fits(self, shape: torch.Size, what: str = "tensor") -> None:
        """Raise ValueError unless these parameters were made for a tensor of `shape`."""
        expected = self.granularity.stats_shape(shape)
        if self.scale.shape != expected:
            raise ValueError(
                f"these QParams do not fit a {what} of shape {tuple(shape)}: {self.granularity} needs scale "
                f"shape {tuple(expected)}, got {tuple(self.scale.shape)}"
            )

    def to(self, device) -> "QParams":
        """The same parameters with scale and zero_point on `device`."""
        return QParams(self.scale.to(device), self.zero_point.to(device), self.bits, self.symmetric,
                       self.qmin, self.qmax, self.granularity, self.dtype)


def choose_qparams(x: torch.Tensor, bits: int = 8, symmetric: bool = False,
                   granularity: Granularity = PerTensor(), *, restricted: bool = True) -> QParams:
    """Min-max quantization parameters for `x`, one pair per block of `granularity`.

    symmetric:   scale = max|x| / qmax,                 zero_point = 0
                 (restricted range: codes -qmax..qmax, the code qmin is never produced)
    symmetric, restricted=False (the full signed range, as torch's qint8 observers and torchao do):
                 scale = max|x| / ((qmax - qmin) / 2),  zero_point = 0
                 (the largest positive value lands on qmax + 1/2 and is clipped to qmax)
    asymmetric:  lo = min(min x, 0), hi = max(max x, 0) (zero is always representable)
                 scale = (hi - lo) / (qmax - qmin),     zero_point = qmin - round(lo / scale)
    A constant block (max == min) gets scale = |c| (1 if c == 0) and zero_point = 0, so it
    round-trips exactly instead of dividing by zero.

    Shapes: x (...) -> scale, zero_point `granularity.stats_shape(x.shape)`.
    """
    check_float_tensor(x)
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    check_bool(restricted, "restricted")
    if not restricted and not symmetric:
        raise ValueError("restricted=False only applies to symmetric=True; the asymmetric scheme always "
                         "uses the full range qmin..qmax")
    check_granularity(granularity).check(x.shape)
    qmin, qmax = qrange(bits)
    xb = granularity.to_blocks(x.detach().float())  # block view, e.g. (out, in/g, g)
    scale, zero_point = minmax_params(xb, granularity.reduce_dims(xb.ndim), bits, symmetric, restricted)
    return QParams(scale, zero_point, bits, symmetric, qmin, qmax, granularity, x.dtype)


def minmax_params(xb: torch.Tensor, dims, bits: int, symmetric: bool,
                  restricted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """choose_qparams' formulas on a float32 block view, for inner loops whose values are already checked.

    It checks the arguments' types and ranges, but does not scan xb for NaN / inf (choose_qparams does).
    Shapes: xb (...) float32, reduced over `dims` -> scale float32, zero_point int32, both keepdim.
    """
    if not isinstance(xb, torch.Tensor) or xb.dtype != torch.float32 or xb.numel() == 0:
        raise TypeError(f"xb must be a non-empty float32 tensor (a block view), got "
                        f"{xb.dtype if isinstance(xb, torch.Tensor) else type(xb).__name__}")
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    check_bool(restricted, "restricted")
    listed = dims if isinstance(dims, tuple) else (dims,)
    if not all(isinstance(d, int) and not isinstance(d, bool) and -xb.ndim <= d < xb.ndim for d in listed):
        raise ValueError(f"dims must be a dim of xb (ndim {xb.ndim}) or a tuple of them, got {dims!r}")
    if not restricted and not symmetric:
        raise ValueError("restricted=False only applies to symmetric=True")
    qmin, qmax = qrange(bits)
    x_min, x_max = xb.amin(dim=dims, keepdim=True), xb.amax(dim=dims, keepdim=True)  # stats_shape
    if symmetric:
        scale = torch.maximum(x_min.abs(), x_max.abs()) / (qmax if restricted else (qmax - qmin) / 2)
        scale = scale.clamp(min=torch.finfo(torch.float32).tiny)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        lo, hi = x_min.clamp(max=0), x_max.clamp(min=0)
        scale = ((hi - lo) / (qmax - qmin)).clamp(min=torch.finfo(torch.float32).tiny)
        zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    constant = x_max == x_min
    scale = torch.where(constant, torch.where(x_max == 0, torch.ones_like(x_max), x_max.abs()), scale)
    zero_point = torch.where(constant, torch.zeros_like(zero_point), zero_point)
    return scale, zero_point


def _unclamped_codes(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """round(x / scale) + zero_point in float32, in the block view of x."""
    xb = qparams.granularity.to_blocks(x.float())  # block view
    scale, zero_point = qparams.scale.to(x.device), qparams.zero_point.to(x.device)
    return torch.round(xb / scale) + zero_point


def quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Integer codes q = clamp(round(x / scale) + zero_point, qmin, qmax).

    Shapes: x (...) -> q (...), dtype int8, on x's device.
    """
    check_float_tensor(x)
    _check_qparams(qparams).check_fits(x.shape)
    q = _unclamped_codes(x, qparams).clamp(qparams.qmin, qparams.qmax)
    return q.to(CODE_DTYPE).reshape(x.shape)


def dequantize(q: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Reconstruction r = scale * (q - zero_point), in `qparams.dtype`.

    Shapes: q (...) integer codes -> r (...), same shape, on q's device.
    """
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor of integer codes, got {type(q).__name__}")
    if q.is_floating_point() or q.dtype == torch.bool or q.is_complex():
        raise TypeError(f"q must be an integer tensor of codes (for example int8), got {q.dtype}")
    _check_qparams(qparams).check_fits(q.shape, "code tensor")
    if q.numel() and (int(q.min()) < qparams.qmin or int(q.max()) > qparams.qmax):
        raise ValueError(f"codes must lie in [{qparams.qmin}, {qparams.qmax}] for {qparams.bits} bits, "
                         f"got values from {int(q.min())} to {int(q.max())}")
    qb = qparams.granularity.to_blocks(q.to(torch.int32))  # block view
    scale, zero_point = qparams.scale.to(q.device), qparams.zero_point.to(q.device)
    r = scale * (qb - zero_point).float()
    return cast_finite(r.reshape(q.shape), qparams.dtype)


def cast_finite(r: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """r cast to `dtype`, clamped first to the finite range of `dtype` when that range is narrower.

    A min-max grid whose range reaches the dtype's largest value (float16: 65504) can put its top level half a
    step beyond it; a plain cast would turn that level into inf. Clamping moves it to the largest finite value,
    which is closer to the original weight than the level was.
    Shapes: r (...) -> (...), in `dtype`.
    """
    if not isinstance(r, torch.Tensor) or not r.is_floating_point():
        raise TypeError(f"r must be a floating-point tensor, got "
                        f"{r.dtype if isinstance(r, torch.Tensor) else type(r).__name__}")
    check_float_dtype(dtype)
    if torch.finfo(dtype).max < torch.finfo(r.dtype).max:
        limit = torch.finfo(dtype).max
        r = r.clamp(-limit, limit)
    return r.to(dtype)


class _FakeQuantizeSTE(torch.autograd.Function):
    """dequantize(quantize(x)) forward; straight-through gradient inside [qmin, qmax]."""

    @staticmethod
    def forward(ctx, x, qparams):
        q_raw = _unclamped_codes(x, qparams)  # block view, float
        inside = (q_raw >= qparams.qmin) & (q_raw <= qparams.qmax)
        ctx.save_for_backward(inside.reshape(x.shape))
        q = q_raw.clamp(qparams.qmin, qparams.qmax)
        r = qparams.scale.to(x.device) * (q - qparams.zero_point.to(x.device))
        return cast_finite(r.reshape(x.shape), x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (inside,) = ctx.saved_tensors
        return grad_out * inside.to(grad_out.dtype), None


def fake_quantize(x: torch.Tensor, bits: int = 8, symmetric: bool = False,
                  granularity: Granularity = PerTensor(), qparams: QParams | None = None) -> torch.Tensor:
    """dequantize(quantize(x)) with a straight-through estimator (STE) for the gradient.

    Forward:  x_hat = scale * (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point)
    Backward: d x_hat / d x = 1 where round(x / scale) + zero_point lies in [qmin, qmax], else 0.
    `qparams` defaults to `choose_qparams(x.detach(), bits, symmetric, granularity)`; pass
    fixed ones to quantize with a calibrated range instead.

    Shapes: x (...) -> x_hat (...), same dtype and device.
    """
    check_float_tensor(x)
    if qparams is None:
        qparams = choose_qparams(x.detach(), bits, symmetric, granularity)
    else:
        _check_qparams(qparams).check_fits(x.shape)
    return _FakeQuantizeSTE.apply(x, qparams)


def _check_qparams(qparams) -> QParams:
    if not isinstance(qparams, QParams):
        raise TypeError(f"qparams must be a QParams (from choose_qparams), got {type(qparams).__name__}")
    return qparams
