"""Microscaling: OCP MX v1.0 (MXFP8, MXFP6, MXFP4; Rouhani et al. 2023, arXiv:2310.10537) and NVIDIA's NVFP4.

A block of k consecutive weights along the input axis shares one scale X; each weight keeps a tiny float P_i:

    MX (k = 32):  X = 2^(floor(log2(amax)) - emax_elem)  stored as E8M0,   P_i = elem(W_i / X),   W_hat_i = X * P_i
    NVFP4 (k = 16): s = e4m3(amax / 6 / t),  t = tensor_amax / (448 * 6)  (one float32 per tensor),
                  P_i = e2m1(W_i * ((1 / t) / s)),   W_hat_i = P_i * (t * s)

elem() rounds to the nearest value of the element format, ties to even, and saturates at its largest value
(the spec's "minimally supported" conversion, section 6.3). The elements (fp8.FloatFormat, derived from the bits):

    format       element  emax_elem  largest  bits per weight (codes + one scale byte per block)
    mxfp8_e4m3   E4M3     8          448      8 + 8 / 32 = 8.25
    mxfp8_e5m2   E5M2     15         57344    8.25
    mxfp6_e2m3   E2M3     2          7.5      6 + 8 / 32 = 6.25  (four codes packed in three bytes)
    mxfp6_e3m2   E3M2     4          28       6.25
    mxfp4        E2M1     2          6        4 + 8 / 32 = 4.25  (two codes per byte)
    nvfp4        E2M1     2          6        4 + 8 / 16 = 4.5   (+ 32 bits per tensor)

E8M0 is a bare biased exponent: code c means 2^(c - 127), c = 255 is NaN (never produced here). Because X is a
power of two at or below amax / 2^emax_elem, amax / X lies in [2^emax, 2^(emax + 1)): a block's largest weight can
exceed the element's largest value (6 for E2M1: up to 8 is clipped) or use as little as 4 / 6 of the grid. NVFP4's
E4M3 block scale follows amax / 6 to 3 mantissa bits instead; the per-tensor float32 scale t puts the block
scales inside E4M3's range (block scales are clamped to [2^-6, 448]).

Storage (the bytes counted in `nbytes`):

    FP4 codes, two per byte, first in the low nibble (torchao's pack_uint4):  byte = c1 << 4 | c0
    FP6 codes, four in three bytes, little-endian bit order (w = c0 | c1 << 6 | c2 << 12 | c3 << 18):
        byte 0 = b1 b0 a5 a4 a3 a2 a1 a0   byte 1 = c3 c2 c1 c0 b5 b4 b3 b2   byte 2 = d5 d4 d3 d2 d1 d0 c5 c4
    each code is the element's own bit pattern S E..E M..M (sign bit highest).

Oracles (tests): torchao's MXTensor.to_mx(W, elem, 32) (FLOOR scaling) and NVFP4Tensor.to_nvfp4(W, 16,
per_tensor_scale=amax / 2688) give the same codes and scales, bit for bit, with two documented exceptions:
torchao divides by 2^-126 where the E8M0 code is 0 (2^-127; its guard against Triton's denormals) while it
multiplies back by 2^-127, so such a block (amax < 2^(emax_elem - 126)) comes back at half size; here the spec's
2^-127 is used both ways. A W whose amax is 0 has t = 0 in torchao (all NaN); here t = 1 and the codes are 0.
llama.cpp / gguf-py's MXFP4 (`to_gguf_mxfp4`) differs in three ways: the E8M0 exponent comes from
floor(log2f(amax)) in float32 (an amax just below a power of two can round up to it, one scale too large; here the
float's exponent bits are read exactly; and a block with amax < 2^-125 gets a negative exponent that the uint8
cast wraps around instead of clamping), the element is the first nearest in its table (ties go to the smaller
magnitude and -0 becomes +0, not ties-to-even), and the block layout is [E8M0 byte, 16 bytes] with code j in
the low nibble and code j + 16 in the high nibble of byte j. Simplified: blocks run along the input axis only
(in_features must be a multiple of the block); on a CPU the layer dequantizes then multiplies (an emulation:
the memory is real, the speed is not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.granularity import PerChannel, PerTensor
from ..core.validation import (
    check_bits,
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
from . import fp8
from .fp8 import E4M3, E5M2, FloatFormat, decode, encode, fill_layer
from .weight import QuantizedWeight

__all__ = ["ALL_FORMATS", "E2M1", "E2M3", "E3M2", "FORMATS", "MXFormat", "MXLinear", "MXWeight", "e8m0_decode",
           "e8m0_scale", "pack", "quantize_layer", "quantize_weight", "to_gguf_mxfp4", "unpack"]

E2M1 = FloatFormat("e2m1", 2, 1)  # FP4: 0, 0.5, 1, 1.5, 2, 3, 4, 6
E2M3 = FloatFormat("e2m3", 2, 3)  # FP6: largest 7.5
E3M2 = FloatFormat("e3m2", 3, 2)  # FP6: largest 28
E8M0_BIAS = 127
NVFP4_TENSOR_DIVISOR = 448.0 * 6.0  # torchao's per_tensor_amax_to_scale: amax / (F8E4M3_MAX * F4_E2M1_MAX)


@dataclass(frozen=True)
class MXFormat:
    """One block format: its element, block size and scale kind ("e8m0" for MX, "e4m3" for NVFP4)."""

    element: FloatFormat
    block_size: int
    scale: str

    def __post_init__(self):
        if not isinstance(self.element, FloatFormat):
            raise TypeError(f"element must be a FloatFormat such as mx.E2M1, got {type(self.element).__name__}")
        check_positive_int(self.block_size, "block_size")
        check_choice(self.scale, "scale", ("e8m0", "e4m3"))


FORMATS = {
    "mxfp8_e4m3": MXFormat(E4M3, 32, "e8m0"), "mxfp8_e5m2": MXFormat(E5M2, 32, "e8m0"),
    "mxfp6_e2m3": MXFormat(E2M3, 32, "e8m0"), "mxfp6_e3m2": MXFormat(E3M2, 32, "e8m0"),
    "mxfp4": MXFormat(E2M1, 32, "e8m0"), "nvfp4": MXFormat(E2M1, 16, "e4m3"),
}
ALL_FORMATS = tuple(FORMATS) + tuple(fp8.FORMATS)
_TORCH_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def e8m0_scale(amax: torch.Tensor, emax: int) -> torch.Tensor:
    """The MX shared-scale code: clamp(floor(log2(amax)) - emax, -127, 127) + 127.

    floor(log2(amax)) is read from the float32 exponent field (exact); 0 and denormal amax read as -127, amax
    beyond float32's range as 128 (the code saturates at 254 either way).
    Shapes: amax (...) float, >= 0 -> (...) uint8.
    """
    check_float_tensor(amax, "amax", allow_empty=True)
    check_positive_int(emax, "emax", minimum=0)
    if amax.numel() and bool((amax < 0).any()):
        raise ValueError("amax must be >= 0 (the largest |W| of each block), got a negative value")
    exponent = ((amax.float().view(torch.int32) >> 23) & 0xFF) - 127  # (...) floor(log2(amax))
    return ((exponent - emax).clamp(-E8M0_BIAS, E8M0_BIAS) + E8M0_BIAS).to(torch.uint8)


def e8m0_decode(code: torch.Tensor) -> torch.Tensor:
    """2^(code - 127), exact in float32 (2^-127 is a float32 denormal). Shapes: (...) uint8 -> (...) float32.

    Code 255 is E8M0's NaN and is refused.
    """
    check_codes(code, "code", 254)
    return _e8m0_decode(code)


def _e8m0_decode(code: torch.Tensor) -> torch.Tensor:
    """e8m0_decode without the code scan, for scales this module wrote itself (every forward of MXLinear)."""
    return torch.exp2(code.double() - E8M0_BIAS).float()


def _check_element_bits(bits) -> None:
    check_bits(bits)
    if bits not in (4, 6, 8):
        raise ValueError(f"bits must be 4, 6 or 8 (the FP4, FP6 and FP8 elements), got {bits}")


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack element codes along the last axis (layouts in the module docstring): 4 -> two per byte, 6 -> four
    in three bytes, 8 -> as is. Shapes: codes (..., n) uint8, n a multiple of 4 -> (..., n * bits / 8) uint8."""
    _check_element_bits(bits)
    check_codes(codes, "codes", 2 ** bits - 1)
    per = {4: 2, 6: 4, 8: 1}[bits]  # codes per whole number of bytes
    if codes.ndim == 0 or codes.shape[-1] % per:
        raise ValueError(f"{bits}-bit codes are packed {per} at a time: the last axis needs a multiple of {per} "
                         f"codes, got shape {tuple(codes.shape)}")
    if bits == 8:
        return codes
    c = codes.to(torch.int32)
    if bits == 4:
        return (c[..., 0::2] | c[..., 1::2] << 4).to(torch.uint8)  # (..., n / 2)
    c = c.reshape(*c.shape[:-1], c.shape[-1] // 4, 4)  # (..., n / 4, 4)
    word = c[..., 0] | c[..., 1] << 6 | c[..., 2] << 12 | c[..., 3] << 18  # (..., n / 4) 24 bits each
    packed = torch.stack([word & 0xFF, (word >> 8) & 0xFF, word >> 16], dim=-1)  # (..., n / 4, 3)
    return packed.reshape(*codes.shape[:-1], codes.shape[-1] // 4 * 3).to(torch.uint8)  # (..., 3n / 4)


def unpack(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of `pack`. Shapes: (..., n * bits / 8) uint8 -> (..., n) uint8."""
    _check_element_bits(bits)
    check_codes(packed, "packed")
    if packed.ndim == 0 or (bits == 6 and packed.shape[-1] % 3):
        raise ValueError(f"packed {bits}-bit codes need a last axis{' of a multiple of 3 bytes' * (bits == 6)}, got "
                         f"shape {tuple(packed.shape)}")
    return _unpack(packed, bits)


def _unpack(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """unpack without the argument checks, for codes this module packed itself. Shapes: as unpack."""
    if bits == 8:
        return packed
    p = packed.to(torch.int32)
    if bits == 4:
        pairs = torch.stack([p & 0xF, p >> 4], dim=-1)  # (..., n / 2, 2)
        return pairs.reshape(*p.shape[:-1], p.shape[-1] * 2).to(torch.uint8)  # (..., n)
    b = p.reshape(*p.shape[:-1], p.shape[-1] // 3, 3)  # (..., n / 4, 3)
    word = b[..., 0] | b[..., 1] << 8 | b[..., 2] << 16  # (..., n / 4)
    codes = torch.stack([(word >> s) & 0x3F for s in (0, 6, 12, 18)], dim=-1)  # (..., n / 4, 4)
    return codes.reshape(*p.shape[:-1], p.shape[-1] // 3 * 4).to(torch.uint8)  # (..., n)


def _encode(x: torch.Tensor, element: FloatFormat) -> torch.Tensor:
    """Element codes of x: torch's own cast for the FP8 elements (saturated first), else fp8.encode (same rule)."""
    if element.name in _TORCH_FP8:
        return x.clamp(-element.max, element.max).to(_TORCH_FP8[element.name]).view(torch.uint8)
    return encode(x, element)


@dataclass(frozen=True, eq=False)
class MXWeight(QuantizedWeight):
    """Packed element codes and one scale per block of the input axis (see the module docstring).

    Shapes: W_q (out, in * bits / 8) uint8; scale (out, in / block) uint8 E8M0 codes (MX) or float8_e4m3fn
    (NVFP4); tensor_scale () float32 (NVFP4 only, else None).
    """

    W_q: torch.Tensor
    scale: torch.Tensor
    format: str
    tensor_scale: torch.Tensor | None = None

    def stored(self) -> dict[str, torch.Tensor]:
        out = {"W_q": self.W_q, "scale": self.scale}
        if self.tensor_scale is not None:
            out["tensor_scale"] = self.tensor_scale
        return out

    def codes(self) -> torch.Tensor:
        """The element codes (out, in), uint8, each the element's bit pattern."""
        return _unpack(self.W_q, FORMATS[self.format].element.bits)

    def block_scales(self) -> torch.Tensor:
        """The float32 scale of every block: 2^(c - 127) (MX) or t * s (NVFP4). Shapes: -> (out, in / block, 1)."""
        if self.tensor_scale is None:
            return _e8m0_decode(self.scale)[..., None]
        return (self.tensor_scale * self.scale.float())[..., None]

    def dequantize(self) -> torch.Tensor:
        spec = FORMATS[self.format]
        values = decode(self.codes(), spec.element)  # (out, in) float32
        blocks = values.reshape(self.shape[0], -1, spec.block_size)  # (out, in / block, block)
        return (blocks * self.block_scales()).reshape(self.shape).to(self.dtype)


def _nvfp4_tensor_scale(amax: torch.Tensor) -> torch.Tensor:
    """t = amax / 2688 (float32); 1 for an all-zero tensor. Raises where t would be a float32 denormal."""
    t = amax.float() / NVFP4_TENSOR_DIVISOR
    if float(amax) == 0.0:
        return torch.ones((), device=amax.device)
    if float(t) < torch.finfo(torch.float32).tiny:
        raise ValueError(f"NVFP4 needs max |W| >= {NVFP4_TENSOR_DIVISOR * torch.finfo(torch.float32).tiny:.3g} "
                         f"(its tensor scale amax / 2688 is a float32 denormal), got {float(amax):.3g}; scale W up")
    return t.reshape(())


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, format: str = "mxfp4",
                    granularity: str | None = None) -> MXWeight | fp8.FP8Weight:
    """Quantize W to a block float format; data-free (X is checked and unused).

    MX:     code = e8m0_scale(amax, emax_elem),  P = elem(W / 2^(code - 127))          per block of 32
    NVFP4:  t = amax(W) / 2688,  s = e4m3(clamp(amax / 6 / t, 2^-6, 448)),  P = e2m1(W * ((1 / t) / s))   per 16
    "fp8_e4m3" / "fp8_e5m2" go to fp8.quantize_weight with `granularity` ("tensor", "channel" (default) or "block");
    the MX formats take no granularity (the spec fixes the block).

    Shapes: W (out, in), in % block == 0; X (tokens, in) or None -> MXWeight (or FP8Weight) of W (out, in).
    """
    check_choice(format, "format", ALL_FORMATS)
    if format in fp8.FORMATS:
        return fp8.quantize_weight(W, X, format, granularity or "channel")
    check_weight(W)
    check_inputs(X, W, required=False, method=format)
    if granularity is not None:
        raise ValueError(f"{format} has its block fixed by the spec ({FORMATS[format].block_size} along the input "
                         f"axis): leave granularity=None (it is for the fp8_* formats)")
    spec = FORMATS[format]
    out_features, in_features = W.shape
    if in_features % spec.block_size:
        raise ValueError(f"{format} needs in_features divisible by {spec.block_size}, got {in_features}")
    blocks = W.detach().float().reshape(out_features, -1, spec.block_size)  # (out, in / block, block)
    amax = blocks.abs().amax(dim=-1)  # (out, in / block)
    tensor_scale = None
    if spec.scale == "e8m0":
        scale = e8m0_scale(amax, spec.element.emax)  # (out, in / block) uint8
        scaled = blocks / _e8m0_decode(scale)[..., None]  # (out, in / block, block)
    else:
        tensor_scale = _nvfp4_tensor_scale(amax.amax())
        scale = (amax / spec.element.max / tensor_scale).clamp(torch.finfo(torch.float8_e4m3fn).tiny,
                                                               E4M3.max).to(torch.float8_e4m3fn)
        reciprocal = (1.0 / tensor_scale) / scale.float()  # (out, in / block), torchao's order of operations
        scaled = (blocks * reciprocal[..., None]).clamp(-spec.element.max, spec.element.max)
    codes = _encode(scaled, spec.element).reshape(out_features, in_features)  # (out, in)
    return MXWeight(W.shape, W.dtype, pack(codes, spec.element.bits), scale, format, tensor_scale)


def to_gguf_mxfp4(qw: MXWeight) -> torch.Tensor:
    """An mxfp4 weight in GGML's block_mxfp4 layout: per block of 32, [E8M0, 16 bytes], byte j = c[j] | c[j+16] << 4.

    The same E2M1 bit codes and E8M0 bytes (see the module docstring for where GGML would choose others).
    Shapes: qw of W (out, in) -> (out, in / 32 * 17) uint8, the rows gguf.quants.quantize(W, MXFP4) returns.
    """
    if not isinstance(qw, MXWeight) or qw.format != "mxfp4":
        raise TypeError(f"to_gguf_mxfp4 needs an mxfp4 MXWeight, got {getattr(qw, 'format', type(qw).__name__)!r}")
    codes = qw.codes().reshape(qw.shape[0], -1, 32)  # (out, in / 32, 32)
    qs = codes[..., :16] | (codes[..., 16:] << 4)  # (out, in / 32, 16)
    return torch.cat([qw.scale[..., None], qs], dim=-1).reshape(qw.shape[0], -1)  # (out, in / 32 * 17)


class MXLinear(nn.Module):
    """A Linear layer whose weight is stored in an MX format or NVFP4 (buffers weight_q, weight_scale and, for
    NVFP4, tensor_scale); forward dequantizes, then multiplies in X's dtype (an emulation on hardware without
    MX units). Build one with `MXLinear.from_linear(linear, format)`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, format: str = "mxfp4",
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.format = check_choice(format, "format", tuple(FORMATS))
        check_bool(bias, "bias")
        spec = FORMATS[format]
        if in_features % spec.block_size:
            raise ValueError(f"{format} needs in_features divisible by {spec.block_size}, got {in_features}")
        self.dtype = check_float_dtype(dtype)
        n_blocks = in_features // spec.block_size
        self.register_buffer("weight_q", torch.zeros(out_features, in_features * spec.element.bits // 8,
                                                     dtype=torch.uint8, device=device))
        scale_dtype = torch.uint8 if spec.scale == "e8m0" else torch.float8_e4m3fn
        self.register_buffer("weight_scale", torch.zeros(out_features, n_blocks, device=device).to(scale_dtype))
        if spec.scale == "e4m3":
            self.register_buffer("tensor_scale", torch.ones((), device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, format: str = "mxfp4") -> "MXLinear":
        """Quantize a trained nn.Linear with quantize_weight, keeping its bias in float."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, format, W.dtype, W.device)
        qw = quantize_weight(W, format=format)
        buffers = {"weight_q": qw.W_q, "weight_scale": qw.scale}
        if qw.tensor_scale is not None:
            buffers["tensor_scale"] = qw.tensor_scale
        return fill_layer(layer, linear, buffers)

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "format": self.format, "dtype": self.dtype}

    def quantized_weight(self) -> MXWeight:
        """The stored weight as an MXWeight (shares the buffers)."""
        return MXWeight(torch.Size((self.out_features, self.in_features)), self.dtype, self.weight_q,
                        self.weight_scale, self.format, getattr(self, "tensor_scale", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0 \
                or x.shape[-1] != self.in_features:
            raise ValueError(f"MXLinear expects a float tensor of shape (..., {self.in_features}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        W_hat = self.quantized_weight().dequantize().to(x.dtype)  # (out, in)
        return F.linear(x, W_hat, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}, " \
               f"bias={self.bias is not None}"


def quantize_layer(name, linear, X, bits, granularity, symmetric, format="mxfp4", block_size=None,
                   fp8_activations=False) -> nn.Module:
    """quantize_model's hook: MXLinear for the block formats; the fp8_* formats go to fp8.quantize_layer
    (granularity PerTensor() / PerChannel(), block_size, fp8_activations). bits: 8 (the default) or the element's."""
    get_method("mx").check_layer(linear, X, bits, granularity, symmetric)
    check_choice(format, "format", ALL_FORMATS)
    check_bool(fp8_activations, "fp8_activations")
    if format in fp8.FORMATS:
        if bits != 8:
            raise ValueError(f"{format} stores 8 bits per weight: leave bits at 8, got {bits}")
        return fp8.quantize_layer(name, linear, X, bits, granularity, symmetric, format, block_size, fp8_activations)
    element_bits = FORMATS[format].element.bits
    if bits not in (8, element_bits) or not isinstance(granularity, PerChannel) or block_size is not None \
            or fp8_activations:
        raise ValueError(f"{format} fixes its own bits ({element_bits}) and blocks: leave bits, granularity, "
                         f"block_size and fp8_activations at their defaults")
    return MXLinear.from_linear(linear, format)


register_method(QuantMethod("mx", quantize_layer, bits=(4, 6, 8), symmetric=(True,),
                            granularities=(PerChannel, PerTensor),
                            description="MX block formats (MXFP8/6/4) and NVFP4 (MXLinear, emulated); fp8_* via "
                                        "FP8Linear"), replace=True)
serialize.register_layer_type(MXLinear)
