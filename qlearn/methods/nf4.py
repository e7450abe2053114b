"""NF4, the 4-bit NormalFloat of QLoRA (Dettmers et al. 2023, arXiv:2305.14314), with double quantization.

Objective: W is close to normal, so give each of the 16 codes an equal share of N(0, 1)'s probability
mass (the quantiles), then scale every block of `block_size` weights by its absolute maximum:

    absmax = max |W[block]|,   W_q = argmin_i |W / absmax - NF4_CODE[i]|,   W_hat = NF4_CODE[W_q] * absmax

Double quantization (QLoRA section 3) quantizes the float32 absmax values themselves, as bitsandbytes
does: subtract their mean, then blocks of 256 are scaled by their own absmax (float32) and snapped to
bitsandbytes' 8-bit dynamic code (`dynamic_code`, a signed float-like table). Bits per weight:
4 + 32 / 64 = 4.5 at block 64, and 4 + 8 / 64 + 32 / (64 * 256) = 4.127 with double quantization.
Codes and reconstruction follow bitsandbytes' `quantize_4bit(quant_type="nf4")` bit for bit (same
code table, same x * (1 / absmax), same nearest-code ties); its packed bytes hold the first code in
the high nibble, ours (`packing.pack`) in the low one. Simplified: blocks run along the input axis,
so block_size must divide in_features; the tiny code tables are constants and are not counted in nbytes.

Layer and model level: NF4Linear stores the packed codes and the absmax values (float32, or 8-bit with double
quantization) as buffers, so `state_dict`, `model_size_bytes` and `.to(device)` see the real bytes, and
dequantizes per forward: Y = X @ W_hat^T + b in X's dtype. The weight is frozen; gradients flow through the input,
which is what LoRA adapters on top need (QLoRA's frozen base layer). `quantize_model(model, method="nf4",
granularity=PerGroup(64), double_quant=True)` replaces a model's Linears by NF4Linear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.granularity import PerGroup
from ..core.primitives import cast_finite
from ..core.validation import (
    check_bool,
    check_float_tensor,
    check_group_size,
    check_inputs,
    check_number,
    check_positive_int,
    check_weight,
)
from ..inference import packing, serialize
from ..inference.registry import QuantMethod, get_method, register_method
from .weight import QuantizedWeight

__all__ = ["ABSMAX_BLOCK", "NF4_CODE", "NF4_OFFSET", "NF4Linear", "NF4Weight", "absmax_quantize", "dynamic_code",
           "normal_float_code", "quantize_layer", "quantize_weight"]

NF4_OFFSET = 0.9677083  # outermost quantile: mean of 1 - 1/(2*15) and 1 - 1/(2*16), as bitsandbytes rounds it
ABSMAX_BLOCK = 256  # double quantization: absmax values per 8-bit block, as bitsandbytes


def normal_float_code(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 values: normal quantiles, 8 positive and 7 negative plus an exact zero, scaled to [-1, 1].

    positive: ppf(p) for p in linspace(offset, 0.5, 9)[:-1];  negative: -ppf(p) for p in linspace(offset, 0.5, 8)[:-1]
    code = sort(negative + [0] + positive) / max   (float32, as bitsandbytes' create_normal_map)

    Shapes: -> (16,) float32, sorted, code[0] == -1, code[7] == 0, code[15] == 1.
    """
    check_number(offset, "offset", 0.5, low_inclusive=False, high=1.0 - 1e-9)
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())  # (8,) quantiles
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())  # (7,)
    code = torch.cat([negative, positive.new_zeros(1), positive]).float().sort().values  # (16,)
    return code / code.max()


def dynamic_code() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic code (create_dynamic_map): 7 decades of linear fractions, 0 and 1.

    For exponent e = 0..6: midpoints of linspace(0.1, 1, 2^e + 1), times 10^(e - 6), both signs.
    Shapes: -> (256,) float32, sorted.
    """
    values = [0.0, 1.0]
    for e in range(7):
        edges = torch.linspace(0.1, 1, 2 ** e + 1)
        mids = (10.0 ** (e - 6)) * ((edges[:-1] + edges[1:]) / 2)  # (2^e,) float32
        values += mids.tolist() + (-mids).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


NF4_CODE = normal_float_code()


def absmax_quantize(x: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization onto a sorted code table (bitsandbytes' rule).

    absmax = max |x[block]|,  idx = nearest code to clamp(x * (1 / absmax), -1, 1)  (ties to the lower code)

    Shapes: x (n_blocks, block) float -> idx (n_blocks, block) uint8, absmax (n_blocks, 1) float32.
    """
    check_float_tensor(x, "x")
    if x.ndim != 2 or not bool(torch.isfinite(x.float()).all()):
        raise ValueError(f"x must be (n_blocks, block) with values within float32's range, got shape {tuple(x.shape)}")
    check_float_tensor(code, "code")
    if code.ndim != 1 or not 2 <= code.numel() <= 256 or not bool((code.diff() > 0).all()) \
            or not bool((code.abs() <= 1).all()):
        raise ValueError(f"code must be a sorted 1-D table of 2 to 256 distinct levels in [-1, 1], got shape "
                         f"{tuple(code.shape)}")
    return _absmax_quantize(x, code)


def _absmax_quantize(x: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.float()
    absmax = x.abs().amax(dim=-1, keepdim=True)  # (n_blocks, 1)
    scaled = (x * (1.0 / absmax.clamp(min=1e-38))).clamp(-1, 1)
    code = code.to(x.device)
    bounds = (code[:-1] + code[1:]) / 2  # (len(code) - 1,) decision boundaries
    return torch.bucketize(scaled, bounds).to(torch.uint8), absmax


def _byte_table(device) -> torch.Tensor:
    """(256, 2): the NF4 values of a packed byte's low and high nibble (code index = slot value, see packing)."""
    b = torch.arange(256, device=device)
    code = NF4_CODE.to(device)
    return torch.stack([code[b & 15], code[b >> 4]], dim=1)


@dataclass(frozen=True, eq=False)
class NF4Weight(QuantizedWeight):
    """NF4 codes packed two to a byte and one absmax per block (float32, or 8-bit with double quantization).

    W_hat[row, block] = NF4_CODE[W_q[row, block]] * absmax[row, block]
    Shapes: W_q (out, in / 2) uint8; absmax (out, in / block_size, 1) float32, or, with double
    quantization, absmax_q (n_blocks,) uint8, absmax_scale (ceil(n_blocks / 256),) float32, absmax_mean ().
    """

    W_q: torch.Tensor
    block_size: int
    absmax: torch.Tensor | None = None
    absmax_q: torch.Tensor | None = None
    absmax_scale: torch.Tensor | None = None
    absmax_mean: torch.Tensor | None = None

    def stored(self) -> dict[str, torch.Tensor]:
        names = ("W_q", "absmax", "absmax_q", "absmax_scale", "absmax_mean")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def codes(self) -> torch.Tensor:
        """Code indices (out, in) into NF4_CODE, uint8 in 0..15."""
        return (packing.unpack(self.W_q, 4, self.shape[1]).to(torch.int16) + 8).to(torch.uint8)

    def absmax_values(self) -> torch.Tensor:
        """The absmax of every block, float32 (out, in / block_size, 1), dequantized when double quantized."""
        if self.absmax is not None:
            return self.absmax
        n = self.absmax_q.numel()
        q = F.pad(self.absmax_q, (0, (-n) % ABSMAX_BLOCK)).reshape(-1, ABSMAX_BLOCK)  # (n_blocks2, 256)
        values = dynamic_code().to(q.device)[q.long()] * self.absmax_scale[:, None]  # (n_blocks2, 256)
        absmax = values.reshape(-1)[:n] + self.absmax_mean  # (n_blocks,)
        return absmax.reshape(self.shape[0], -1, 1)  # (out, in / block_size, 1)

    def dequantize(self) -> torch.Tensor:
        if self.shape[1] % 2 == 0:  # no padding nibble: look up both nibbles of each byte at once (same values)
            values = F.embedding(self.W_q.to(torch.int32), _byte_table(self.W_q.device))  # (out, in / 2, 2)
        else:
            values = NF4_CODE.to(self.W_q.device)[self.codes().long()]  # (out, in) float32
        blocks = values.reshape(self.shape[0], -1, self.block_size)  # (out, in / block, block)
        return cast_finite((blocks * self.absmax_values()).reshape(self.shape), self.dtype)


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, bits: int = 4, group_size: int = 64,
                    double_quant: bool = False) -> NF4Weight:
    """NF4 with one absmax per block of `group_size` input columns; data-free (X is checked and unused).

    W_q = nearest NF4 code to W / absmax;  with double_quant the absmax values are stored in 8 bits:
    absmax_q, absmax_scale = absmax_quantize(absmax - mean(absmax), dynamic_code()) per block of 256.
    NF4 is a 4-bit code: `bits` must be 4 (it is there so that every weight method has one signature).

    Shapes: W (out, in), in % group_size == 0; X (tokens, in) or None -> NF4Weight of W (out, in).
    """
    check_weight(W)
    check_inputs(X, W, required=False, method="nf4")
    if bits != 4 or isinstance(bits, bool):
        raise ValueError(f"NF4 is a 4-bit code (16 normal quantiles): bits must be 4, got {bits!r}; for 3 or 2 bits "
                         "use rtn, hqq, gptq or awq")
    block_size = check_group_size(group_size, W.shape[1], "group_size", allow_none=False)
    check_bool(double_quant, "double_quant")
    out_features, in_features = W.shape
    idx, absmax = _absmax_quantize(W.reshape(-1, block_size), NF4_CODE)  # (n_blocks, block), (n_blocks, 1)
    W_q = packing.pack((idx.to(torch.int8) - 8).reshape(out_features, in_features), 4)  # (out, in / 2)
    if not double_quant:
        return NF4Weight(W.shape, W.dtype, W_q, block_size, absmax=absmax.reshape(out_features, -1, 1))
    mean = absmax.mean()
    centred = (absmax.reshape(-1) - mean)  # (n_blocks,)
    n = centred.numel()
    padded = F.pad(centred, (0, (-n) % ABSMAX_BLOCK)).reshape(-1, ABSMAX_BLOCK)  # (n_blocks2, 256)
    absmax_q, absmax_scale = _absmax_quantize(padded, dynamic_code())
    return NF4Weight(W.shape, W.dtype, W_q, block_size, absmax_q=absmax_q.reshape(-1)[:n],
                     absmax_scale=absmax_scale.reshape(-1), absmax_mean=mean)


ABSMAX_BUFFERS = ("absmax", "absmax_q", "absmax_scale", "absmax_mean")


class NF4Linear(nn.Module):
    """A Linear layer with NF4 weights. Build one with `NF4Linear.from_linear(linear)`; the constructor
    makes an empty skeleton (every weight 0) that `load_state_dict` fills."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, block_size: int = 64,
                 double_quant: bool = False, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.block_size = check_group_size(block_size, in_features, "block_size", allow_none=False)
        self.double_quant = check_bool(double_quant, "double_quant")
        check_bool(bias, "bias")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype (of the reconstructed weight) must be a float dtype, got {dtype!r}")
        self.dtype = dtype
        n_blocks = out_features * in_features // block_size
        zero_code = 0x77  # NF4_CODE[7] == 0 in both nibbles
        self.register_buffer("weight_q", torch.full((out_features, packing.packed_length(in_features, 4)), zero_code,
                                                    dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("absmax_q", torch.zeros(n_blocks, dtype=torch.uint8, device=device))
            self.register_buffer("absmax_scale", torch.ones(math.ceil(n_blocks / ABSMAX_BLOCK), device=device))
            self.register_buffer("absmax_mean", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.ones(out_features, in_features // block_size, 1, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = 64, double_quant: bool = False) -> "NF4Linear":
        """Quantize a trained nn.Linear to NF4 (nf4.quantize_weight), keeping its bias.

        Shapes: linear.weight (out, in) -> weight_q (out, in / 2) uint8 and absmax buffers.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        if W.is_meta:
            raise ValueError("the Linear layer's weight is on the meta device (no values to quantize)")
        qw = quantize_weight(W, group_size=block_size, double_quant=double_quant)
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, block_size=block_size,
                    double_quant=double_quant, dtype=W.dtype, device=W.device)
        with torch.no_grad():
            for name, tensor in qw.stored().items():
                getattr(layer, "weight_q" if name == "W_q" else name).copy_(tensor)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "block_size": self.block_size, "double_quant": self.double_quant, "dtype": self.dtype}

    def quantized_weight(self) -> NF4Weight:
        """The stored weight as an NF4Weight (shares the buffers)."""
        absmax = {name: getattr(self, name) for name in ABSMAX_BUFFERS if hasattr(self, name)}
        return NF4Weight(torch.Size((self.out_features, self.in_features)), self.dtype, self.weight_q,
                             self.block_size, **absmax)

    def dequantized_weight(self) -> torch.Tensor:
        """W_hat (out, in) in the original weight dtype."""
        return self.quantized_weight().dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"NF4Linear input must be a floating-point tensor, got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"NF4Linear expects inputs of shape (..., {self.in_features}), got {tuple(x.shape)}")
        W_hat = self.dequantized_weight().to(x.dtype)  # (out, in), a constant: gradients go to x only
        return F.linear(x, W_hat, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, block_size={self.block_size}, "
                f"double_quant={self.double_quant}, bias={self.bias is not None}")


# ---- model level ---------------------------------------------------------------------------------------------

def quantize_layer(name, linear, X, bits, granularity, symmetric, double_quant=False) -> NF4Linear:
    """NF4 with one absmax per PerGroup block, in an NF4Linear (data-free: X is None).

    Shapes: linear.weight (out, in) -> NF4Linear (out, in).
    """
    get_method("nf4").check_layer(linear, X, bits, granularity, symmetric)
    return NF4Linear.from_linear(linear, block_size=granularity.group_size, double_quant=double_quant)


register_method(QuantMethod("nf4", quantize_layer, bits=(4,), symmetric=(True,), granularities=(PerGroup,),
                            description="NF4 of QLoRA, block absmax = PerGroup (NF4Linear)"), replace=True)
serialize.register_layer_type(NF4Linear)
