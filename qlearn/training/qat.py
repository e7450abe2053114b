"""Quantization-aware training (QAT): train float weights through a quantized forward pass.

    forward:   W_hat = fake_quantize(W) = scale * (clamp(round(W / scale) + zp, qmin, qmax) - zp)
               y = x_hat @ W_hat^T + b      (x_hat = fake_quantize(x) with calibrated QParams, optional)
    backward:  d W_hat / d W = 1 inside the range, 0 outside (straight-through estimator, STE)
    update:    the float master weights W; W_hat is recomputed from them at every step

The scale comes either from an observer over W (fixed at `prepare_qat`, refreshed every
`recalibrate_every` training steps or by `recalibrate(model)`), or is learned (LSQ, `lsq.py`).
`convert` swaps each QATLinear for the real `QuantLinear` with the same QParams. Without any
training, a prepared model is simply post-training quantization (PTQ) of its weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..core.granularity import Granularity, PerChannel, check_granularity
from ..core.modules import replace_module
from ..core.primitives import QParams, fake_quantize, qrange
from ..core.validation import check_bits, check_bool, check_positive_int
from .lsq import lsq_fake_quantize, lsq_init_scale, lsq_qparams
from .observers import OBSERVERS, make_observer

__all__ = ["QATLinear", "convert", "prepare_qat", "qat_layers", "recalibrate"]


class QATLinear(nn.Linear):
    """nn.Linear with fake-quantized weights (and optionally inputs) in the forward pass.

    bits, symmetric, granularity: how W is quantized (per output channel by default)
    observer:          how the weight range is chosen: 'minmax', 'percentile', 'mse', ...
    lsq:               learn the step size (symmetric only) instead of observing it
    recalibrate_every: in training mode, re-observe W every N forward passes (None: never)
    act_qparams:       fixed QParams for the input x (static activation quantization), or None

    Shapes: x (..., in_features) -> y (..., out_features); weight (out_features, in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 8,
                 symmetric: bool = True, granularity: Granularity = PerChannel(0), observer: str = "minmax",
                 lsq: bool = False, recalibrate_every: int | None = None, act_qparams: QParams | None = None,
                 device=None, dtype=None):
        check_positive_int(in_features, "in_features")
        check_positive_int(out_features, "out_features")
        check_bool(bias, "bias")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.bits, self.symmetric = check_bits(bits), check_bool(symmetric, "symmetric")
        self.granularity = check_granularity(granularity)
        self.granularity.check(self.weight.shape)
        if observer not in OBSERVERS:
            raise ValueError(f"observer must be one of {sorted(OBSERVERS)}, got {observer!r}")
        self.observer, self.lsq = observer, check_bool(lsq, "lsq")
        if lsq and not symmetric:
            raise ValueError("lsq=True learns a symmetric step size; pass symmetric=True")
        if recalibrate_every is not None and (isinstance(recalibrate_every, bool)
                                              or not isinstance(recalibrate_every, int) or recalibrate_every < 1):
            raise ValueError(f"recalibrate_every must be a positive int or None, got {recalibrate_every!r}")
        if lsq and recalibrate_every is not None:
            raise ValueError("lsq=True learns the scale; recalibrate_every applies to observed scales only")
        self.recalibrate_every, self.steps = recalibrate_every, 0
        self.set_act_qparams(act_qparams)
        if lsq:
            self.weight_scale = nn.Parameter(lsq_init_scale(self.weight, bits, self.granularity))
        self.recalibrate()

    @classmethod
    def from_linear(cls, linear: nn.Linear, **options) -> "QATLinear":
        """A QATLinear whose float master weights start as a copy of `linear`'s (options as __init__)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    device=w.device, dtype=w.dtype, **options)
        with torch.no_grad():
            layer.weight.copy_(w)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        if layer.lsq:
            with torch.no_grad():
                layer.weight_scale.copy_(lsq_init_scale(layer.weight, layer.bits, layer.granularity))
        else:
            layer.recalibrate()
        return layer

    def set_act_qparams(self, act_qparams: QParams | None) -> None:
        """Quantize the input with these fixed QParams (from `calibrate`), or not at all (None)."""
        if act_qparams is not None and not isinstance(act_qparams, QParams):
            raise TypeError(f"act_qparams must be QParams (e.g. from calibrate) or None, got "
                            f"{type(act_qparams).__name__}")
        self.act_qparams = act_qparams

    @torch.no_grad()
    def recalibrate(self) -> None:
        """Re-observe the current float weights and fix the scale / zero point to their range."""
        if self.lsq:
            return
        qp = make_observer(self.observer, self.bits, self.symmetric, self.granularity).observe(self.weight).qparams()
        self.register_buffer("weight_scale", qp.scale, persistent=True)
        self.register_buffer("weight_zero_point", qp.zero_point, persistent=True)

    def weight_qparams(self) -> QParams:
        """The QParams the forward pass quantizes W with right now."""
        if self.lsq:
            return lsq_qparams(self.weight_scale, self.bits, self.granularity, self.weight.dtype)
        return QParams(self.weight_scale, self.weight_zero_point, self.bits, self.symmetric,
                       *qrange(self.bits), self.granularity, self.weight.dtype)

    def quantized_weight(self) -> torch.Tensor:
        """W_hat, the weight the forward pass uses (with the STE / LSQ gradient attached)."""
        if self.lsq:
            return lsq_fake_quantize(self.weight, self.weight_scale, self.bits, self.granularity)
        return fake_quantize(self.weight, qparams=self.weight_qparams())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.recalibrate_every is not None and self.steps % self.recalibrate_every == 0:
                self.recalibrate()
            self.steps += 1
        if self.act_qparams is not None:
            x = fake_quantize(x, qparams=self.act_qparams)
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        scale = "lsq" if self.lsq else self.observer
        return (f"{super().extra_repr()}, bits={self.bits}, symmetric={self.symmetric}, "
                f"granularity={self.granularity}, scale={scale}, recalibrate_every={self.recalibrate_every}, "
                f"act_quant={self.act_qparams is not None}")


def prepare_qat(model: nn.Module, layers: list[str] | None = None, act_qparams: dict | None = None,
                **options) -> nn.Module:
    """A copy of `model` with each named nn.Linear replaced by a QATLinear (options as QATLinear).

    layers:      module names to quantize; None means every nn.Linear in the model
    act_qparams: {layer name: QParams} for static input quantization of some layers (from `calibrate`)
    The original model is left untouched. Without training this is PTQ of the weights.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layers is None:
        layers = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of module names such as ['0', '2'] or None, got {layers!r}")
    bad = [n for n in layers if not isinstance(n, str) or not isinstance(modules.get(n), nn.Linear)]
    if bad or not layers:
        linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
        raise ValueError(f"layers must name nn.Linear modules of the model; not Linear: {bad}; Linear layers: {linear}")
    act_qparams = {} if act_qparams is None else act_qparams
    if not isinstance(act_qparams, dict) or set(act_qparams) - set(layers):
        raise ValueError(f"act_qparams must be a dict whose keys are among layers {layers}, got {act_qparams!r}")
    qmodel = copy.deepcopy(model)
    for name in layers:
        replace_module(qmodel, name, QATLinear.from_linear(modules[name], act_qparams=act_qparams.get(name), **options))
    return qmodel


def qat_layers(model: nn.Module) -> dict[str, QATLinear]:
    """{name: layer} for every QATLinear in `model`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, QATLinear)}


def recalibrate(model: nn.Module) -> int:
    """Re-observe the weight range of every QATLinear in `model`; returns how many were updated."""
    layers = [m for m in qat_layers(model).values() if not m.lsq]
    for layer in layers:
        layer.recalibrate()
    return len(layers)


def convert(model: nn.Module, kernel: str = "reference") -> nn.Module:
    """A copy of `model` where each QATLinear is the real `QuantLinear` with the same QParams.

    The integer layer stores the codes (int8, or packed 2-/4-bit) and the scales; with
    kernel="reference" its output equals the QATLinear's output bit for bit. kernel="auto" lets
    QuantLinear pick a fused PyTorch kernel (faster where one fits, equal within float rounding).
    """
    from ..inference.linear import KERNELS, QuantLinear

    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    layers = qat_layers(model)
    if not layers:
        raise ValueError("model has no QATLinear layers; call prepare_qat(model) first")
    qmodel = copy.deepcopy(model)
    for name, layer in layers.items():
        if layer.act_qparams is not None:
            raise ValueError(f"layer {name!r} quantizes its input; convert handles weight-only QAT layers")
        linear = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None,
                           device=layer.weight.device, dtype=layer.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(layer.weight)
            if layer.bias is not None:
                linear.bias.copy_(layer.bias)
        replace_module(qmodel, name, QuantLinear.from_linear(
            linear, bits=layer.bits, granularity=layer.granularity, symmetric=layer.symmetric,
            qparams=layer.weight_qparams(), kernel=kernel))
    return qmodel
