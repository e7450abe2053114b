"""QuantLinear: a Linear layer that stores integer weights for real and dequantizes on the fly.

The inference recipe (W8A16, W4A16, W2A16: integer weights, float activations):

    W_hat = scale * (W_q - zero_point)        dequantize, one (scale, zero_point) per block
    Y     = X @ W_hat^T + b                   compute in float

`W_q` lives in a buffer: int8 (out, in) for 5..8 bits, or 2-/4-bit codes packed into a uint8
(out, ceil(in * c / 8)) buffer for 2..4 bits (see `packing.py`). `scale` (float32) and
`zero_point` (int8) are buffers of shape `granularity.stats_shape((out, in))`. With
`activations=8` the input is quantized too, per token and symmetric (W8A8):

    X_hat = fake_quantize(X, bits=8, symmetric=True, granularity=PerToken())

`kernel="reference"` always runs the two lines above; `kernel="auto"` runs one of PyTorch's
fused kernels when one fits (see `kernels.py`), which tests check against the reference.

Shapes: X (..., in) -> Y (..., out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels, packing
from ..core.validation import check_bits, check_bool
from ..core.granularity import PerChannel, PerToken, check_granularity
from ..core.primitives import QParams, choose_qparams, dequantize, fake_quantize, quantize, qrange

KERNELS = ("auto", "reference")


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_weight_granularity(granularity, shape) -> None:
    """Raise unless `granularity` can split a weight of `shape` (out, in): per tensor, channel or group."""
    check_granularity(granularity)
    if isinstance(granularity, PerToken):
        raise ValueError("PerToken() is for activations; weights take PerTensor(), PerChannel(0) or PerGroup(g)")
    granularity.check(torch.Size(shape))


def check_activations(activations):
    """`activations` is None (float activations) or the bits of dynamic per-token activation codes."""
    if activations is not None:
        check_bits(activations)
    return activations


class QuantLinear(nn.Module):
    """A Linear layer with `bits`-bit integer weights (see the module docstring for the formulas).

    Build one from a trained layer with `QuantLinear.from_linear(linear, ...)`; the constructor
    makes an empty skeleton (zero codes, unit scales) that `load_state_dict` fills.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, granularity=PerChannel(0),
                 symmetric: bool = True, bias: bool = True, kernel: str = "auto", activations=None,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = _check_int(in_features, "in_features")
        self.out_features = _check_int(out_features, "out_features")
        self.bits = check_bits(bits)
        self.symmetric = check_bool(symmetric, "symmetric")
        check_bool(bias, "bias")
        check_weight_granularity(granularity, (out_features, in_features))
        self.granularity = granularity
        self.activations = check_activations(activations)
        self.kernel = kernel  # validated by the property setter
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype (of the reconstructed weight) must be a float dtype, got {dtype!r}")
        self.dtype = dtype
        stats = granularity.stats_shape(torch.Size((out_features, in_features)))
        if bits > 4:
            codes = torch.zeros(out_features, in_features, dtype=torch.int8, device=device)  # (out, in)
        else:
            codes = torch.full((out_features, packing.packed_length(in_features, bits)),
                               -qrange(bits)[0] * 0x11 if bits > 2 else 0xAA, dtype=torch.uint8,
                               device=device)  # (out, packed in): every slot holds code 0
        self.register_buffer("weight_q", codes)
        self.register_buffer("scale", torch.ones(stats, dtype=torch.float32, device=device))
        self.register_buffer("zero_point", torch.zeros(stats, dtype=torch.int8, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None
        self._cache = None  # the fast kernel's own weight layout, built on first use (never saved)

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {value!r}")
        self._kernel = value
        self._cache = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, granularity=PerChannel(0), symmetric: bool = True,
                    qparams: QParams | None = None, activations=None, kernel: str = "auto") -> "QuantLinear":
        """Quantize a trained `nn.Linear` round-to-nearest; with `qparams`, use exactly those scales.

        When `qparams` is given, its bits, symmetric and granularity are used (the arguments of the
        same names are ignored), so that with kernel="reference"
        `QuantLinear.from_linear(lin, qparams=qp, kernel="reference")(x)` equals
        `F.linear(x, fake_quantize(lin.weight, qparams=qp), lin.bias)` bit for bit.

        Shapes: linear.weight (out, in) -> weight_q, scale and zero_point as in the module docstring.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        if W.is_meta:
            raise ValueError("the Linear layer's weight is on the meta device (no values to quantize)")
        if qparams is None:
            check_weight_granularity(granularity, W.shape)
            qparams = choose_qparams(W, bits=bits, symmetric=symmetric, granularity=granularity)
        elif not isinstance(qparams, QParams):
            raise TypeError(f"qparams must be a QParams (from choose_qparams) or None, got {type(qparams).__name__}")
        else:
            check_weight_granularity(qparams.granularity, W.shape)
            qparams.check_fits(W.shape, "Linear weight")
        layer = cls(linear.in_features, linear.out_features, bits=qparams.bits, granularity=qparams.granularity,
                    symmetric=qparams.symmetric, bias=linear.bias is not None, kernel=kernel,
                    activations=activations, dtype=W.dtype, device=W.device)
        layer.set_weight(quantize(W, qparams.to(W.device)), qparams)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    @torch.no_grad()
    def set_weight(self, W_q: torch.Tensor, qparams: QParams) -> None:
        """Store integer codes W_q (out, in) and their scale / zero point (shapes must match this layer)."""
        if (qparams.bits, qparams.symmetric, qparams.granularity) != (self.bits, self.symmetric, self.granularity):
            raise ValueError("qparams (bits, symmetric, granularity) must match the layer's "
                             f"({self.bits}, {self.symmetric}, {self.granularity})")
        qparams.check_fits(torch.Size((self.out_features, self.in_features)), "weight")
        if W_q.shape != (self.out_features, self.in_features):
            raise ValueError(f"W_q must have shape {(self.out_features, self.in_features)}, got {tuple(W_q.shape)}")
        stored = W_q if self.bits > 4 else packing.pack(W_q, self.bits)
        self.weight_q = stored.to(self.weight_q.device)
        self.scale = qparams.scale.detach().to(torch.float32).to(self.scale.device).clone()
        self.zero_point = qparams.zero_point.detach().to(torch.int8).to(self.zero_point.device).clone()
        self._cache = None

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (serialize stores them, no pickle)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "granularity": self.granularity, "symmetric": self.symmetric, "bias": self.bias is not None,
                "activations": self.activations, "dtype": self.dtype}

    def codes(self) -> torch.Tensor:
        """The integer codes W_q (out, in), int8 (unpacked when stored packed)."""
        if self.bits > 4:
            return self.weight_q
        return packing.unpack(self.weight_q, self.bits, self.in_features)  # (out, in)

    def qparams(self) -> QParams:
        """The weight's QParams (scale, zero point, bits, granularity) as one object."""
        qmin, qmax = qrange(self.bits)
        return QParams(self.scale, self.zero_point.to(torch.int32), self.bits, self.symmetric, qmin, qmax,
                       self.granularity, self.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """W_hat as a float tensor, for code that reads `layer.weight` (Hugging Face's T5 checks its dtype).

        It dequantizes on every access; `forward` never uses it.
        """
        return self.dequantized_weight()

    def dequantized_weight(self) -> torch.Tensor:
        """W_hat = scale * (W_q - zero_point), shape (out, in), in the original weight dtype."""
        return dequantize(self.codes(), self.qparams())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"QuantLinear input must be a floating-point tensor, got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects inputs of shape (..., {self.in_features}), got {tuple(x.shape)}")
        if self.kernel == "auto":
            fast = kernels.select(self, x)
            if fast is not None:
                return fast(self, x)
        return self.reference_forward(x)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantize then matmul: Y = X_hat @ W_hat^T + b (X_hat = X unless `activations` is set)."""
        if self.activations is not None and x.numel():
            x = fake_quantize(x, bits=self.activations, symmetric=True, granularity=PerToken())
        W_hat = self.dequantized_weight().to(x.dtype)  # (out, in)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, W_hat, bias)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = None  # new codes invalidate the fast kernel's copy
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        act = "float" if self.activations is None else f"int{self.activations} per token"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"granularity={self.granularity}, symmetric={self.symmetric}, activations={act}, "
                f"bias={self.bias is not None}, kernel={self.kernel!r}")

