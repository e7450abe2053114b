"""A Hadamard rotation of each block before MXFP4 / NVFP4 weights (Egiazarian et al. 2025, "Bridging the Gap
Between Promise and Performance for Microscaling FP4 Quantization"; NVIDIA's NVFP4 training recipe rotates with
random 16 x 16 Hadamard transforms too).

MXFP4 gives each block of 32 weights one power-of-two scale, set by the block's largest |w|; one large weight
makes the scale coarse for the other 31. A Walsh-Hadamard H_b of the block's size spreads that weight over the
whole block (the block becomes nearly Gaussian), and the layer undoes the rotation on its input at run time:

    H = diag(s) blockdiag(H_b, ..., H_b) / sqrt(b)      (in, in), orthonormal; s = +-1 (random_signs) or 1
    stored:  mx(W H)                                     the block format of the rotated weight
    layer:   y = (x H) mx(W H)^T + bias   ~=  x W^T + bias     exact without rounding, because H H^T = I
    W_hat = mx(W H) H^T                                  the weight the layer applies, in x's basis

    objective: a smaller || x W^T - x W_hat^T || than mx(W) gives, at the same bytes (the signs, when random,
    are one int8 per input column, counted)

With b equal to the format's block (32 for MX, 16 for NVFP4) each rotated block stays inside one scale block,
so the rotation costs log2(b) add / subtract passes per input row (rotation.hadamard_transform) and no matmul.
Simplified against the paper: round to nearest in the rotated basis (no GPTQ), and on a CPU the layer dequantizes
then multiplies (an emulation, like mx.MXLinear).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.granularity import PerChannel, PerTensor
from ..core.primitives import cast_finite
from ..core.validation import check_bool, check_choice, check_inputs, check_weight
from ..inference import serialize
from ..inference.registry import QuantMethod, get_method, register_method
from . import mx
from .fp8 import fill_layer
from .rotation import _block, _check_seed, _hadamard_transform, _signs
from .weight import QuantizedWeight

__all__ = ["HadamardMXLinear", "HadamardMXWeight", "quantize_layer", "quantize_weight"]


def _rotate(x: torch.Tensor, signs: torch.Tensor | None, block: int) -> torch.Tensor:
    """x H = (x diag(s)) B: the signs first, then the block butterflies. Shapes: (..., n) -> (..., n)."""
    return _hadamard_transform(x if signs is None else x * signs.to(x.dtype), block)


@dataclass(frozen=True, eq=False)
class HadamardMXWeight(QuantizedWeight):
    """mx(W H) and what undoes H. Shapes: rotated of W (out, in); signs (in,) int8 or None."""

    rotated: mx.MXWeight
    block_size: int
    signs: torch.Tensor | None = None

    def stored(self) -> dict[str, torch.Tensor]:
        out = dict(self.rotated.stored())
        if self.signs is not None:
            out["signs"] = self.signs
        return out

    def dequantize(self) -> torch.Tensor:
        """W_hat = mx(W H) H^T = (mx(W H) B) diag(s), B the symmetric block Hadamard. Shapes: -> (out, in)."""
        W_rot = _hadamard_transform(self.rotated.dequantize().float(), self.block_size)  # (out, in) times B
        return cast_finite(W_rot if self.signs is None else W_rot * self.signs.float(), self.dtype)  # no inf in fp16


def quantize_weight(W: torch.Tensor, X: torch.Tensor | None = None, format: str = "mxfp4", block_size: int = 32,
                    random_signs: bool = False, seed: int = 0) -> HadamardMXWeight:
    """Rotate each block of `block_size` input columns by a Walsh-Hadamard matrix, then quantize to `format`.

    W H = (W diag(s)) B,  stored mx(W H);  W_hat = mx(W H) H^T.  Data-free: X is checked and unused.
    Shapes: W (out, in), in % block_size == 0 and in % the format's block == 0; X (tokens, in) or None.
    """
    check_weight(W)
    check_inputs(X, W, required=False, method="hadamard_mx")
    check_choice(format, "format", tuple(mx.FORMATS))
    block = _block(W.shape[1], block_size)
    check_bool(random_signs, "random_signs")
    _check_seed(seed)
    signs = _signs(W.shape[1], seed).to(torch.int8).to(W.device) if random_signs else None  # (in,)
    rotated = mx.quantize_weight(_rotate(W.detach().float(), signs, block), format=format)  # of W H (out, in)
    return HadamardMXWeight(W.shape, W.dtype, rotated, block, signs)


class HadamardMXLinear(nn.Module):
    """y = mx_linear(x H): an mx.MXLinear holding mx(W H), with the input rotated at run time (buffer `signs`).

    Build one with `HadamardMXLinear.from_linear(linear, format, block_size, random_signs, seed)`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, format: str = "mxfp4",
                 block_size: int = 32, random_signs: bool = False, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.inner = mx.MXLinear(in_features, out_features, bias, format, dtype, device)
        self.block_size = _block(in_features, block_size)
        self.random_signs = check_bool(random_signs, "random_signs")
        self.register_buffer("signs", torch.ones(in_features, dtype=torch.int8, device=device))

    @property
    def in_features(self) -> int:
        return self.inner.in_features

    @property
    def out_features(self) -> int:
        return self.inner.out_features

    @classmethod
    def from_linear(cls, linear: nn.Linear, format: str = "mxfp4", block_size: int = 32, random_signs: bool = False,
                    seed: int = 0) -> "HadamardMXLinear":
        """Quantize a trained nn.Linear with quantize_weight (bias kept in float)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        qw = quantize_weight(W, format=format, block_size=block_size, random_signs=random_signs, seed=seed)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, format, block_size,
                    random_signs, W.dtype, W.device)
        buffers = {"weight_q": qw.rotated.W_q, "weight_scale": qw.rotated.scale}
        if qw.rotated.tensor_scale is not None:
            buffers["tensor_scale"] = qw.rotated.tensor_scale
        fill_layer(layer.inner, linear, buffers)
        if qw.signs is not None:
            layer.signs.copy_(qw.signs)
        return layer

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {**self.inner.config(), "block_size": self.block_size, "random_signs": self.random_signs}

    def quantized_weight(self) -> HadamardMXWeight:
        """The stored weight as a HadamardMXWeight (shares the buffers)."""
        return HadamardMXWeight(torch.Size((self.out_features, self.in_features)), self.inner.dtype,
                                self.inner.quantized_weight(), self.block_size,
                                self.signs if self.random_signs else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0 \
                or x.shape[-1] != self.in_features:
            raise ValueError(f"HadamardMXLinear expects a float tensor of shape (..., {self.in_features}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return self.inner(_rotate(x, self.signs if self.random_signs else None, self.block_size))

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, random_signs={self.random_signs}"


def quantize_layer(name, linear, X, bits, granularity, symmetric, format="mxfp4", block_size=32,
                   random_signs=False, seed=0) -> HadamardMXLinear:
    """quantize_model's hook: HadamardMXLinear.from_linear. bits: 8 (the default) or the element's own."""
    get_method("hadamard_mx").check_layer(linear, X, bits, granularity, symmetric)
    check_choice(format, "format", tuple(mx.FORMATS))
    element_bits = mx.FORMATS[format].element.bits
    if bits not in (8, element_bits) or not isinstance(granularity, PerChannel):
        raise ValueError(f"{format} fixes its own bits ({element_bits}) and blocks: leave bits and granularity at "
                         f"their defaults")
    return HadamardMXLinear.from_linear(linear, format, block_size, random_signs, seed)


register_method(QuantMethod("hadamard_mx", quantize_layer, bits=(4, 6, 8), symmetric=(True,),
                            granularities=(PerChannel, PerTensor),
                            description="a Walsh-Hadamard per block of the input, then an MX / NVFP4 weight "
                                        "(HadamardMXLinear, emulated)"), replace=True)
serialize.register_layer_type(HadamardMXLinear)
