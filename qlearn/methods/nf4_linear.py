"""NF4Linear: a Linear layer whose weight is stored as NF4 for real (QLoRA's frozen base layer).

    W_hat = NF4_CODE[W_q] * absmax           dequantize per block (see nf4.py)
    Y     = X @ W_hat^T + b                  compute in X's dtype

The packed codes (uint8, two per byte) and the absmax values (float32, or 8-bit with double
quantization) are buffers, so `state_dict`, `model_size_bytes` and `.to(device)` see the real bytes.
The weight is frozen; gradients flow through the input, which is what LoRA adapters on top need.

Shapes: X (..., in) -> Y (..., out).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..inference import packing
from ..inference.targets import _shared_names, exclude_patterns as _exclude_patterns, matches as _matches
from ..core.validation import check_bool
from . import nf4
from ._checks import check_group_size, check_positive_int

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
            self.register_buffer("absmax_scale", torch.ones(math.ceil(n_blocks / nf4.ABSMAX_BLOCK), device=device))
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
        qw = nf4.quantize_weight(W, block_size=block_size, double_quant=double_quant)
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

    def quantized_weight(self) -> nf4.NF4Weight:
        """The stored weight as an NF4Weight (shares the buffers)."""
        absmax = {name: getattr(self, name) for name in ABSMAX_BUFFERS if hasattr(self, name)}
        return nf4.NF4Weight(torch.Size((self.out_features, self.in_features)), self.dtype, self.weight_q,
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


def replace_linears_nf4(model: nn.Module, targets=None, exclude=(), block_size: int = 64,
                        double_quant: bool = False, quantize_tied: bool = False) -> tuple[str, ...]:
    """Replace the model's nn.Linear layers by NF4Linear.from_linear, in place; returns the names replaced.

    targets=None takes every nn.Linear; otherwise module names or glob patterns (as quantize_model's
    exclude). A Linear whose weight is tied to another module (a causal LM's lm_head) is kept in
    float unless quantize_tied=True. Every layer is built before the first swap.

    Shapes: each weight (out, in) -> weight_q (out, in / 2) uint8 + absmax, see NF4Linear.
    """
    if not isinstance(model, nn.Module) or isinstance(model, nn.Linear):
        raise TypeError(f"model must be a torch.nn.Module holding Linear layers, got {type(model).__name__}")
    check_bool(double_quant, "double_quant")
    check_bool(quantize_tied, "quantize_tied")
    keep = _exclude_patterns(exclude)
    pick = None if targets is None else _exclude_patterns(targets)
    modules = dict(model.named_modules())
    for pattern in keep + (pick or ()):
        if not any(_matches(name, pattern) for name in modules if name):
            raise ValueError(f"{pattern!r} matches no module of the model; some module names: "
                             f"{[n for n in modules if n][:8]}")
    shared = _shared_names(model)
    new = {}
    for name, module in modules.items():
        if type(module) is not nn.Linear or any(_matches(name, p) for p in keep):
            continue
        if pick is not None and not any(_matches(name, p) for p in pick):
            continue
        if not quantize_tied and len(shared.get(id(module.weight), [])) > 1:
            continue
        new[name] = NF4Linear.from_linear(module, block_size=block_size, double_quant=double_quant)
    if not new:
        raise ValueError("found no nn.Linear layer to quantize (after targets, exclude and tied weights)")
    for name, layer in new.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    return tuple(new)
