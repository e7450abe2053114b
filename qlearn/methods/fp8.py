"""FP8: the OCP 8-bit floating-point formats E4M3 and E5M2 (OCP OFP8 spec v1.0, 2023), with a float32 scale.

A float with e exponent bits, m mantissa bits and bias 2^(e-1) - 1 stores, for the bit fields (S, E, M):

    normal     (E > 0):   (-1)^S * 2^(E - bias) * (1 + M / 2^m)
    subnormal  (E = 0):   (-1)^S * 2^(1 - bias) * (M / 2^m)

E4M3 (bias 7) keeps one NaN (S.1111.111) and no infinities, so its top exponent still holds numbers: the largest
is 1.75 * 2^8 = 448 (torch's float8_e4m3fn, "fn" for finite). E5M2 (bias 15) follows IEEE 754: exponent 11111 is
inf/NaN and the largest number is 1.75 * 2^15 = 57344. The same rule, with no codes reserved at all, gives the
FP6 and FP4 elements of the MX formats (see mx.py). `FloatFormat` derives every value from the bit fields; the
tests check them against torch's float8 dtypes.

Weight quantization (the objective: the nearest FP8 number to W / scale, scaled back):

    amax  = max |W| over one region: the tensor, an output row, or a 128 x 128 block (DeepSeek-V3's weights)
    scale = amax / max_format                                    (float32)
    W_q   = fp8(clamp(W / scale, -max_format, max_format))       torch's own cast: round to nearest, ties to even
    W_hat = W_q * scale

`FP8Linear` stores W_q (1 byte per weight) and the scales as buffers. With `activations="fp8_e4m3"` it also
quantizes each input row (token) to E4M3 with its own scale and, for a tensor or row scale, multiplies the two
FP8 operands with `torch._scaled_mm` (checked on the CPU with torch 2.13, which takes tensor-wise or row-wise
float32 scales only); 128 x 128 block scales are emulated (dequantize, then matmul). Simplified: the scale is
plain amax / max (no amax history, no power-of-two rounding); edge blocks of a 128 x 128 grid are partial; on a
CPU, which has no FP8 arithmetic units, the format saves memory, not time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.granularity import PerChannel, PerTensor
from ..core.validation import (
    check_bool,
    check_choice,
    check_codes,
    check_float_dtype,
    check_float_tensor,
    check_inputs,
    check_positive_int,
    check_weight,
)
from ..inference import serialize
from ..inference.registry import QuantMethod, get_method, register_method
from .weight import QuantizedWeight

__all__ = ["E4M3", "E5M2", "FORMATS", "FP8Linear", "FP8Weight", "FloatFormat", "GRANULARITIES", "decode", "encode",
           "fill_layer", "quantize_activations", "quantize_layer", "quantize_weight"]


@dataclass(frozen=True)
class FloatFormat:
    """A minifloat: 1 sign bit, `exponent_bits`, `mantissa_bits`, bias 2^(e-1) - 1 (see the module docstring).

    special: "ieee" (the top exponent is inf / NaN: E5M2), "fn" (only the all-ones code is NaN: E4M3),
    "none" (every code is a number: the MX FP6 / FP4 elements).
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    special: str = "none"

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str such as 'e4m3', got {type(self.name).__name__}")
        check_positive_int(self.exponent_bits, "exponent_bits")
        check_positive_int(self.mantissa_bits, "mantissa_bits", minimum=0)
        check_choice(self.special, "special", ("ieee", "fn", "none"))
        if self.bits > 8:
            raise ValueError(f"a FloatFormat has at most 8 bits (1 + exponent_bits + mantissa_bits), got {self.bits}")
        if not self.magnitudes()[-1] > 0:
            raise ValueError(f"{self.name} (e{self.exponent_bits}m{self.mantissa_bits}, special={self.special!r}) "
                             "has no positive finite value")

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    def code_values(self) -> torch.Tensor:
        """The value of every code 0 .. 2^bits - 1, NaN / inf where the format reserves them.

        Shapes: -> (2^bits,) float64; code = S << (e + m) | E << m | M.
        """
        e, m = self.exponent_bits, self.mantissa_bits
        code = torch.arange(2 ** self.bits, dtype=torch.int64)  # (2^bits,)
        S, E, M = code >> (e + m), (code >> m) & (2 ** e - 1), code & (2 ** m - 1)
        fraction = M.double() / 2 ** m
        magnitude = torch.where(E > 0, torch.exp2((E - self.bias).double()) * (1 + fraction),
                                2.0 ** (1 - self.bias) * fraction)
        if self.special == "ieee":
            magnitude = torch.where(E == 2 ** e - 1, torch.where(M == 0, torch.inf, torch.nan), magnitude)
        elif self.special == "fn":
            magnitude = torch.where((E == 2 ** e - 1) & (M == 2 ** m - 1), torch.nan, magnitude)
        return torch.where(S == 1, -magnitude, magnitude)

    def magnitudes(self) -> torch.Tensor:
        """The finite non-negative values, increasing; the index of a value is its code (sign bit 0).

        Shapes: -> (n,) float64, n = 2^(e + m) less the reserved codes.
        """
        values = self.code_values()[: 2 ** (self.bits - 1)]  # (2^(e+m),) the positive half
        return values[torch.isfinite(values)]

    @property
    def max(self) -> float:
        """The largest finite value (448 for E4M3, 57344 for E5M2, 6 for E2M1)."""
        return float(self.magnitudes()[-1])

    @property
    def emax(self) -> int:
        """floor(log2(max)): the exponent of the largest value (MX: emax_elem)."""
        return int(torch.log2(self.magnitudes()[-1]).floor())


E4M3 = FloatFormat("e4m3", 4, 3, "fn")
E5M2 = FloatFormat("e5m2", 5, 2, "ieee")
FORMATS = {"fp8_e4m3": (E4M3, torch.float8_e4m3fn), "fp8_e5m2": (E5M2, torch.float8_e5m2)}
GRANULARITIES = ("tensor", "channel", "block")


def encode(x: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """The code of the nearest value of `fmt` to each x: round to nearest, ties to the even code, saturating.

    |x| above max gives max (no inf); the sign bit is x's own, so -0.0 and tiny negatives give the code -0.
    Exact: x (float32) and the grid are compared in float64, where every difference here is exact.

    Shapes: x (...) float -> (...) uint8 codes S << (e + m) | magnitude index.
    """
    check_float_tensor(x, "x", allow_empty=True)
    _check_format(fmt)
    mags = fmt.magnitudes().to(x.device)  # (n,) float64
    a = x.double().abs().clamp(max=mags[-1])  # (...)
    lo = torch.searchsorted(mags, a.contiguous(), right=True) - 1  # largest value <= |x|
    hi = (lo + 1).clamp(max=mags.numel() - 1)
    d_lo, d_hi = a - mags[lo], mags[hi] - a
    up = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))  # the even code is the one whose last mantissa bit is 0
    index = torch.where(up, hi, lo)
    sign = torch.signbit(x).to(torch.int64) << (fmt.bits - 1)
    return (index | sign).to(torch.uint8)


def _check_format(fmt) -> None:
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"fmt must be a FloatFormat such as fp8.E4M3, got {type(fmt).__name__}")


def decode(codes: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """The value of each code (NaN / inf for the codes the format reserves).

    Shapes: codes (...) uint8 -> (...) float32.
    """
    _check_format(fmt)
    check_codes(codes, "codes", 2 ** fmt.bits - 1)
    return fmt.code_values().float().to(codes.device)[codes.long()]


@dataclass(frozen=True, eq=False)
class FP8Weight(QuantizedWeight):
    """FP8 codes and float32 scales: W_hat = W_q * scale, one scale per tensor, output row or square block.

    Shapes: W_q (out, in) float8_e4m3fn / float8_e5m2; scale (1, 1) for "tensor", (out, 1) for "channel",
    (ceil(out / b), ceil(in / b)) for "block" of b x b.
    """

    W_q: torch.Tensor
    scale: torch.Tensor
    format: str
    granularity: str
    block_size: int | None = None

    def stored(self) -> dict[str, torch.Tensor]:
        return {"W_q": self.W_q, "scale": self.scale}

    def scale_full(self) -> torch.Tensor:
        """The scale of every weight. Shapes: -> (out, in), (out, 1) or (1, 1) float32 (broadcasts to W)."""
        return _expand(self.scale, self.granularity, self.block_size, self.shape)

    def dequantize(self) -> torch.Tensor:
        return (self.W_q.float() * self.scale_full()).to(self.dtype)


def _expand(scale: torch.Tensor, granularity: str, block_size, shape) -> torch.Tensor:
    """Block scales (ceil(out / b), ceil(in / b)) -> (out, in); tensor and row scales stay as they broadcast."""
    if granularity != "block":
        return scale
    rows = torch.arange(shape[0], device=scale.device) // block_size  # (out,) the block row of each row
    cols = torch.arange(shape[1], device=scale.device) // block_size  # (in,)
    return scale[rows[:, None], cols[None, :]]  # (out, in)


def _amax(W: torch.Tensor, granularity: str, block_size) -> torch.Tensor:
    """max |W| per region. Shapes: W (out, in) float32 -> (1, 1), (out, 1) or (ceil(out / b), ceil(in / b))."""
    A = W.abs()
    if granularity == "tensor":
        return A.amax().reshape(1, 1)
    if granularity == "channel":
        return A.amax(dim=1, keepdim=True)  # (out, 1)
    br, bc = min(block_size, A.shape[0]), min(block_size, A.shape[1])  # a block past the edge is the whole axis
    A = F.pad(A, (0, (-A.shape[1]) % bc, 0, (-A.shape[0]) % br))  # (ob * br, ib * bc), zeros never raise a max
    return A.reshape(A.shape[0] // br, br, A.shape[1] // bc, bc).amax(dim=(1, 3))  # (ob, br, ib, bc) -> (ob, ib)


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, format: str = "fp8_e4m3",
                    granularity: str = "channel", block_size: int = 128) -> FP8Weight:
    """FP8 weights with a float32 scale per tensor, output row or block_size x block_size block; data-free.

    scale = max(amax / max_format, float32 tiny),  W_q = fp8(clamp(W / scale, +-max_format)),  W_hat = W_q * scale
    (the floor on the scale keeps an all-zero or denormal region finite; its codes are then 0).

    Shapes: W (out, in); X (tokens, in) or None (checked, unused) -> FP8Weight of W (out, in).
    """
    check_weight(W)
    check_inputs(X, W, required=False, method="fp8")
    check_choice(format, "format", tuple(FORMATS))
    check_choice(granularity, "granularity", GRANULARITIES)
    check_positive_int(block_size, "block_size")
    fmt, dtype = FORMATS[format]
    Wf = W.detach().float()
    scale = (_amax(Wf, granularity, block_size) / fmt.max).clamp(min=torch.finfo(torch.float32).tiny)
    scaled = (Wf / _expand(scale, granularity, block_size, W.shape)).clamp(-fmt.max, fmt.max)  # (out, in)
    return FP8Weight(W.shape, W.dtype, scaled.to(dtype), scale, format, granularity,
                     block_size if granularity == "block" else None)


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-row E4M3: scale = max(amax(row) / 448, tiny), x_q = e4m3(clamp(x / scale)).

    Shapes: x (tokens, in) float, |x| within float32's range -> x_q (tokens, in) float8_e4m3fn, scale (tokens, 1)
    float32.
    """
    check_float_tensor(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (tokens, in_features), got shape {tuple(x.shape)}; flatten it with "
                         f"x.reshape(-1, {x.shape[-1] if x.ndim else 1})")
    largest = float(x.detach().abs().max())
    if largest > torch.finfo(torch.float32).max:
        raise ValueError(f"x holds values up to {largest:.3g}, beyond float32's range (the scales are float32)")
    return _quantize_activations(x)


def _quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """quantize_activations without the checks, for FP8Linear's forward (x (tokens, in))."""
    scale = (x.float().abs().amax(dim=1, keepdim=True) / E4M3.max).clamp(min=torch.finfo(torch.float32).tiny)
    return (x.float() / scale).clamp(-E4M3.max, E4M3.max).to(torch.float8_e4m3fn), scale


@torch.no_grad()
def fill_layer(layer: nn.Module, linear: nn.Linear, buffers: dict) -> nn.Module:
    """Copy `buffers` (name -> tensor) into the new layer's buffers and linear's bias into its bias; return it."""
    for name, tensor in buffers.items():
        getattr(layer, name).copy_(tensor)
    if linear.bias is not None:
        layer.bias.copy_(linear.bias.detach())
    return layer


class FP8Linear(nn.Module):
    """A Linear layer with FP8 weights (buffers `weight_q`, `weight_scale`); see the module docstring.

    activations=None: W8A16-style, Y = X @ W_hat^T + b in X's dtype (an emulation: dequantize, then matmul).
    activations="fp8_e4m3": X is quantized per token too, and Y = torch._scaled_mm(X_q, W_q^T, s_x, s_w) + b
    for tensor / channel scales (block scales: the same numbers, emulated). Build one with `from_linear`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, format: str = "fp8_e4m3",
                 granularity: str = "channel", block_size: int = 128, activations: str | None = None,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.format = check_choice(format, "format", tuple(FORMATS))
        self.granularity = check_choice(granularity, "granularity", GRANULARITIES)
        self.block_size = check_positive_int(block_size, "block_size")
        check_bool(bias, "bias")
        self.activations = check_choice(activations, "activations", (None, "fp8_e4m3"))
        self.dtype = check_float_dtype(dtype)
        shape = torch.Size((out_features, in_features))
        scale_shape = _amax(torch.empty(shape, device="meta"), granularity, block_size).shape
        self.register_buffer("weight_q", torch.zeros(shape, dtype=FORMATS[format][1], device=device))
        self.register_buffer("weight_scale", torch.ones(scale_shape, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, format: str = "fp8_e4m3", granularity: str = "channel",
                    block_size: int = 128, activations: str | None = None) -> "FP8Linear":
        """Quantize a trained nn.Linear (quantize_weight), keeping its bias in float."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        qw = quantize_weight(W, format=format, granularity=granularity, block_size=block_size)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, format, granularity,
                    block_size, activations, W.dtype, W.device)
        return fill_layer(layer, linear, {"weight_q": qw.W_q, "weight_scale": qw.scale})

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "format": self.format, "granularity": self.granularity, "block_size": self.block_size,
                "activations": self.activations, "dtype": self.dtype}

    def quantized_weight(self) -> FP8Weight:
        """The stored weight as an FP8Weight (shares the buffers)."""
        return FP8Weight(self.weight_q.shape, self.dtype, self.weight_q, self.weight_scale, self.format,
                         self.granularity, self.block_size if self.granularity == "block" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0 \
                or x.shape[-1] != self.in_features:
            raise ValueError(f"FP8Linear expects a float tensor of shape (..., {self.in_features}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.activations is None:
            return F.linear(x, self.quantized_weight().dequantize().to(x.dtype), bias)
        x2 = x.reshape(-1, self.in_features)  # (tokens, in)
        x_q, x_scale = _quantize_activations(x2)
        if self.granularity == "block":
            y = F.linear(x_q.float() * x_scale, self.quantized_weight().dequantize().float())  # (tokens, out)
        else:
            w_scale = self.weight_scale.reshape(1, -1).expand(1, self.out_features).contiguous()  # (1, out)
            y = torch._scaled_mm(x_q, self.weight_q.t(), scale_a=x_scale, scale_b=w_scale, out_dtype=torch.float32)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)  # (..., out)
        return y if bias is None else y + bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}, "
                f"granularity={self.granularity}, activations={self.activations}, bias={self.bias is not None}")


def quantize_layer(name, linear, X, bits, granularity, symmetric, format="fp8_e4m3", block_size=None,
                   fp8_activations=False) -> FP8Linear:
    """quantize_model's hook: FP8Linear.from_linear, one scale per PerTensor() / PerChannel() region, or per
    block_size x block_size block when block_size is an int (then leave granularity at PerChannel())."""
    get_method("fp8").check_layer(linear, X, bits, granularity, symmetric)
    check_bool(fp8_activations, "fp8_activations")
    if isinstance(granularity, PerChannel) and granularity.axis not in (0, -2):
        raise ValueError(f"fp8 keeps one scale per output row: granularity PerChannel(0), got {granularity!r}")
    if block_size is not None and not isinstance(granularity, PerChannel):
        raise ValueError(f"block_size={block_size!r} sets square blocks: leave granularity at PerChannel()")
    scaling = "block" if block_size is not None else "tensor" if isinstance(granularity, PerTensor) else "channel"
    return FP8Linear.from_linear(linear, format, scaling, block_size or 128, "fp8_e4m3" if fp8_activations else None)


register_method(QuantMethod("fp8", quantize_layer, bits=(8,), symmetric=(True,), granularities=(PerTensor, PerChannel),
                            description="FP8 E4M3 / E5M2 weights, float32 scale per tensor, row or block "
                                        "(FP8Linear; fp8_activations=True: torch._scaled_mm)"), replace=True)
serialize.register_layer_type(FP8Linear)
