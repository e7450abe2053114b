"""QuantLinear: a Linear layer that stores integer weights for real and dequantizes on the fly.

The inference recipe (W8A16, W4A16, W2A16: integer weights, float activations):

    W_hat = scale * (W_q - zero_point)        dequantize, one (scale, zero_point) per block
    Y     = X @ W_hat^T + b                   compute in float

`W_q` lives in a buffer: int8 (out, in) for 5..8 bits, or 2-/4-bit codes packed into a uint8
(out, ceil(in * c / 8)) buffer for 2..4 bits (see `packing.py`). `scale` (float32) and
`zero_point` (int8) are buffers of shape `granularity.stats_shape((out, in))`. With
`activations=8` the input is quantized too, symmetric (W8A8), in one of two ways:

    activation_granularity=PerToken()   dynamic: s_x = max_j |X_tj| / 127 per token, computed at run time
    activation_granularity=PerTensor()  static: one s_x for every input, the buffer `activation_scale` (1, 1),
                                        set before use by calibration (qlearn.calibrate_activations)
    X_hat = s_x * clamp(round(X / s_x), -127, 127)

A layer made from a Linear that SmoothQuant smoothed at run time (it carries the buffer
`smooth_input_scale` = 1/s, shape (in,)) keeps that buffer and multiplies its input by it first.

`kernel="reference"` always runs the two lines above; `kernel="auto"` runs one of PyTorch's
fused kernels when one fits (see `kernels.py`), which tests check against the reference. The layer
chooses its path once per (device, dtype, needs-grad) of the input and keeps that choice in `_cache`
until its weights, activation scale, kernel setting, device or dtype change.

Shapes: X (..., in) -> Y (..., out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.granularity import PerChannel, PerTensor, PerToken, check_granularity
from ..core.primitives import QParams, choose_qparams, dequantize, fake_quantize, qrange, quantize
from ..core.validation import check_bits, check_bool, check_positive_int
from . import kernels, packing

__all__ = ["ACTIVATION_GRANULARITIES", "KERNELS", "QuantLinear", "check_activations", "check_weight_granularity"]

KERNELS = ("auto", "reference")
# What the kernel choice and the kernels' weight layouts are made of: assigning any of them drops `_cache`.
CACHE_INPUTS = frozenset({"weight_q", "scale", "zero_point", "activation_scale", "bits", "granularity", "symmetric",
                          "activations", "activation_granularity", "in_features", "out_features"})


def check_weight_granularity(granularity, shape) -> None:
    """Raise unless `granularity` can split a weight of `shape` (out, in): per tensor, channel or group."""
    check_granularity(granularity)
    if isinstance(granularity, PerToken):
        raise ValueError("PerToken() is for activations; weights take PerTensor(), PerChannel(0) or PerGroup(g)")
    granularity.check(torch.Size(shape))


ACTIVATION_GRANULARITIES = (PerToken(), PerTensor())


def check_activations(activations, activation_granularity=PerToken()):
    """`activations` is None (float activations) or the bits of the activation codes;
    `activation_granularity` is PerToken() (dynamic) or PerTensor() (static, calibrated)."""
    if activations is not None:
        check_bits(activations)
    if activation_granularity not in ACTIVATION_GRANULARITIES:
        raise ValueError(f"activation_granularity must be PerToken() (dynamic, one scale per token) or PerTensor() "
                         f"(static, one calibrated scale), got {activation_granularity!r}")
    return activations


class QuantLinear(nn.Module):
    """A Linear layer with `bits`-bit integer weights (see the module docstring for the formulas).

    Build one from a trained layer with `QuantLinear.from_linear(linear, ...)`; the constructor
    makes an empty skeleton (zero codes, unit scales) that `load_state_dict` fills.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, granularity=PerChannel(0),
                 symmetric: bool = True, bias: bool = True, kernel: str = "auto", activations=None,
                 activation_granularity=PerToken(), smooth_input: bool = False,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.bits = check_bits(bits)
        self.symmetric = check_bool(symmetric, "symmetric")
        check_bool(bias, "bias")
        check_weight_granularity(granularity, (out_features, in_features))
        self.granularity = granularity
        self.activations = check_activations(activations, activation_granularity)
        self.activation_granularity = activation_granularity
        check_bool(smooth_input, "smooth_input")
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
        if self.static_activations:  # 0 = not calibrated yet (a scale is always > 0)
            self.register_buffer("activation_scale", torch.zeros(1, 1, dtype=torch.float32, device=device))
        if smooth_input:  # SmoothQuant's 1/s, applied to the input at run time
            self.register_buffer("smooth_input_scale", torch.ones(in_features, dtype=dtype, device=device))
        # None, or a dict: (device, dtype, needs-grad) -> kernels.Plan, a kernel name -> its weight layout,
        # "calibrated" -> True. Filled on use, never saved; set to None to forget it all.
        self._cache = None

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {value!r}")
        self._kernel = value
        self._cache = None

    @property
    def static_activations(self) -> bool:
        """True when the input is quantized with one calibrated per-tensor scale (`activation_scale`)."""
        return self.activations is not None and self.activation_granularity == PerTensor()

    @property
    def calibrated(self) -> bool:
        """False only for static activations whose `activation_scale` was never set."""
        scale = self.activation_scale if self.static_activations else None
        return scale is None or (not scale.is_meta and bool((scale > 0).all()))

    @torch.no_grad()
    def set_activation_scale(self, scale) -> None:
        """Set the static activation scale s_x (a positive finite number, or a 1-element tensor)."""
        if not self.static_activations:
            raise ValueError("set_activation_scale is for static activations: build the layer with activations=8, "
                             "activation_granularity=PerTensor()")
        s = torch.as_tensor(scale, dtype=torch.float32).detach().reshape(-1)
        if s.numel() != 1 or not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
            raise ValueError(f"the activation scale must be one finite number > 0, got {scale!r}")
        self.activation_scale = s.reshape(1, 1).to(self.activation_scale.device)

    def input_qparams(self, x: torch.Tensor) -> QParams:
        """The activation QParams for x (tokens, in): per token from x, or the calibrated per-tensor scale."""
        if not self.static_activations:
            return choose_qparams(x, bits=self.activations, symmetric=True, granularity=PerToken())  # (tokens, 1)
        if not self._known_calibrated():
            raise ValueError("this QuantLinear has static per-tensor activations but no activation scale yet: "
                             "calibrate it first with qlearn.calibrate_activations(model, batches) "
                             "(or set_activation_scale)")
        qmin, qmax = qrange(self.activations)
        scale = self.activation_scale.to(x.device)  # (1, 1)
        return QParams(scale, torch.zeros_like(scale, dtype=torch.int32), self.activations, True, qmin, qmax,
                       PerTensor(), x.dtype)

    def activation_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the activation quantizer sees: x * smooth_input_scale when the layer has one, else x."""
        if hasattr(self, "smooth_input_scale"):
            return x * self.smooth_input_scale.to(x.dtype)
        return x

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, granularity=PerChannel(0), symmetric: bool = True,
                    qparams: QParams | None = None, activations=None, kernel: str = "auto",
                    activation_granularity=PerToken()) -> "QuantLinear":
        """Quantize a trained `nn.Linear` round-to-nearest; with `qparams`, use exactly those scales.

        A Linear with a `smooth_input_scale` buffer (left by SmoothQuant's `smooth_model`) passes it on.
        With activation_granularity=PerTensor() the new layer needs calibration before use.

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
        smooth = getattr(linear, "smooth_input_scale", None)
        layer = cls(linear.in_features, linear.out_features, bits=qparams.bits, granularity=qparams.granularity,
                    symmetric=qparams.symmetric, bias=linear.bias is not None, kernel=kernel,
                    activations=activations, activation_granularity=activation_granularity,
                    smooth_input=smooth is not None, dtype=W.dtype, device=W.device)
        layer.set_weight(quantize(W, qparams.to(W.device)), qparams)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        if smooth is not None:
            layer.smooth_input_scale.copy_(smooth.detach().reshape(-1))
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
                "activations": self.activations, "activation_granularity": self.activation_granularity,
                "smooth_input": hasattr(self, "smooth_input_scale"), "dtype": self.dtype}

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
        plan = self._plan(x)
        if x.numel() < plan.min_numel:  # too few tokens for the chosen kernel (or none at all)
            return self.reference_forward(x)
        return plan.forward(self, x)

    def _plan(self, x: torch.Tensor) -> kernels.Plan:
        """kernels.choose(self, x), asked once per (device, dtype, needs-grad) of x and kept in `_cache`."""
        key = (x.device, x.dtype, x.requires_grad)
        plan = None if self._cache is None else self._cache.get(key)
        if plan is None:
            plan = kernels.choose(self, x)
            if self._known_calibrated():  # else reference_forward raises; choose again once it is calibrated
                self._cache[key] = plan
        return plan

    def _known_calibrated(self) -> bool:
        """`calibrated`, read from the scale once and then remembered in `_cache` (which is a dict afterwards)."""
        if self._cache is not None and "calibrated" in self._cache:
            return True
        if not self.calibrated:
            return False
        if self._cache is None:
            self._cache = {}
        self._cache["calibrated"] = True
        return True

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantize then matmul: Y = X_hat @ W_hat^T + b (X_hat = X unless `activations` is set)."""
        x = self.activation_input(x)
        if self.activations is not None and x.numel():
            x2 = x.reshape(-1, self.in_features)  # (tokens, in)
            x = fake_quantize(x2, qparams=self.input_qparams(x2)).reshape(x.shape)  # (..., in)
        W_hat = self.dequantized_weight().to(x.dtype)  # (out, in)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, W_hat, bias)

    def __setattr__(self, name: str, value) -> None:
        if name in CACHE_INPUTS:  # set_weight, set_activation_scale, or anyone assigning a buffer
            self.__dict__["_cache"] = None
        super().__setattr__(name, value)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = None  # loading copies into the buffers in place
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._cache = None  # .to(), .cuda(), .half(), ...: the choice and the layouts were for the old device / dtype
        return super()._apply(fn, *args, **kwargs)

    def extra_repr(self) -> str:
        act = "float" if self.activations is None else \
            f"int{self.activations} {'per tensor (static)' if self.static_activations else 'per token'}"
        act += ", smoothed input" if hasattr(self, "smooth_input_scale") else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"granularity={self.granularity}, symmetric={self.symmetric}, activations={act}, "
                f"bias={self.bias is not None}, kernel={self.kernel!r}")

