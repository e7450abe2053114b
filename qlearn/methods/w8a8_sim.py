"""Simulated W8A8 (W8A6, W4A4, MXFP4, ...): every Linear runs on fake-quantized inputs and weights.

    with simulate_w8a8(model, "per_tensor", bits=8, calibration=batches):
        emb = embed(model, tokenizer, sentences)     # the accuracy a real int8 kernel would give
    # here the model is exactly as before: weights restored, hooks removed

Fake quantization (quantize then dequantize, `qlearn.core.primitives.fake_quantize`) gives the numbers
of an integer kernel without one: Y = fq(X) fq(W)^T + b, with weights symmetric per output row
(`weight_bits`; per group of `weight_group_size` input columns when set, or in an MX / NVFP4 `weight_format`)
and the input X of each Linear, symmetric, at `bits`:

    per_tensor   static: one scale for the whole X, from an observer over `calibration` (notebook 06)
    per_token    dynamic: one scale per token row of X, computed at run time
    llm_int8     per_token on the columns below `threshold`; columns O = {j : any |X_tj| >= threshold}
                 stay float (LLM.int8(), see `llm_int8.py`); the weights are int8 on every column
    "mxfp4", "nvfp4", ...   an mx block format (mx.FORMATS) along each token's channels: per block of 32 (16)
                 one shared scale, elements E2M1 etc. (`bits` is then the element's, not used)
    None         float activations (weight-only)

W4A4 as QuaRot measures it: `simulate_w8a8(model, "per_token", bits=4, weight_bits=4, weight_group_size=32)`,
on the model as is or after `rotation.rotate_model` (then each down_proj input is rotated before it is quantized,
since the hook sits on the Linear inside OnlineHadamard).

Works on a smoothed model too (`smooth_model`): its input multiply runs first, so the quantizer
sees X / s.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.granularity import PerChannel, PerGroup, PerTensor, PerToken
from ..core.primitives import QParams, fake_quantize
from ..core.validation import check_bits, check_choice, check_group_size
from ..training.calibrate import calibrate
from ..training.observers import MinMaxObserver, Observer, qparams_from_range
from . import mx
from .llm_int8 import check_threshold, outlier_columns

__all__ = ["ACTIVATIONS", "Simulation", "simulate_w8a8"]

ACTIVATIONS = ("per_tensor", "per_token", "llm_int8", *mx.FORMATS, None)


@dataclass
class Simulation:
    """What a `simulate_w8a8` block is doing: which layers, the static activation QParams, outlier counts."""

    activations: str | None
    bits: int
    weight_bits: int
    layers: tuple[str, ...]
    weight_group_size: int | None = None
    weight_format: str | None = None
    act_qparams: dict[str, QParams] = field(default_factory=dict)  # per_tensor: one per layer
    outliers: dict[str, int] = field(default_factory=dict)  # llm_int8: the most columns kept in float


def _fake_quantize_input(sim: Simulation, name: str, threshold):
    def hook(module, args):
        x = args[0]
        if not isinstance(x, torch.Tensor) or x.numel() == 0:
            return None
        x2 = x.reshape(-1, x.shape[-1]).float()  # (tokens, in)
        if sim.activations == "per_tensor":
            x_hat = fake_quantize(x2, qparams=sim.act_qparams[name])
        elif sim.activations == "per_token":
            x_hat = fake_quantize(x2, sim.bits, symmetric=True, granularity=PerToken())
        elif sim.activations in mx.FORMATS:
            x_hat = mx.quantize_weight(x2, format=sim.activations).dequantize()  # blocks along the channels
        else:  # llm_int8
            cols = outlier_columns(x2, threshold)  # (k,)
            x_hat = fake_quantize(x2.index_fill(1, cols, 0.0), sim.bits, symmetric=True, granularity=PerToken())
            x_hat[:, cols] = x2[:, cols]
            sim.outliers[name] = max(sim.outliers.get(name, 0), int(cols.numel()))
        return (x_hat.to(x.dtype).reshape(x.shape), *args[1:])  # (..., in)
    return hook


def _fake_quantize_weight(W: torch.Tensor, sim: Simulation) -> torch.Tensor:
    """W_hat of one Linear: the MX format, or symmetric weight_bits per row / per group. Shapes: (out, in)."""
    if sim.weight_format is not None:
        return mx.quantize_weight(W, format=sim.weight_format).dequantize()
    granularity = PerChannel(0) if sim.weight_group_size is None else PerGroup(sim.weight_group_size)
    return fake_quantize(W, sim.weight_bits, symmetric=True, granularity=granularity)


def _linear_names(model, layers) -> list[str]:
    modules = dict(model.named_modules())
    if layers is None:
        layers = [n for n, m in modules.items() if type(m) is nn.Linear]
    elif isinstance(layers, str) or not all(isinstance(modules.get(n), nn.Linear) for n in layers):
        raise ValueError(f"layers must be a list of nn.Linear names of the model, got {layers!r}")
    if not layers:
        raise ValueError("the model has no nn.Linear layer to quantize")
    return list(layers)


@contextmanager
def simulate_w8a8(model: nn.Module, activations="per_token", bits: int = 8, weight_bits: int = 8,
                  calibration=None, threshold=6.0, layers=None, observer: Observer | None = None,
                  weight_group_size: int | None = None, weight_format: str | None = None):
    """Inside the block, each Linear computes fq(X) fq(W)^T + b (see the module docstring); yields a Simulation.

    `calibration` (batches as for `qlearn.training.calibrate`, dicts run as model(**batch)) is needed for
    "per_tensor"; `observer` is its template (default MinMaxObserver(bits, symmetric=True)).
    `layers` default to every nn.Linear. Weights and hooks are restored on exit, even on an error.
    Weights: symmetric `weight_bits` per row, or per group of `weight_group_size` input columns, or, with
    `weight_format` (an mx.FORMATS name such as "mxfp4"), that block format (weight_bits is then unused).

    Shapes: each Linear input X (..., in) is quantized as (tokens, in); weights (out, in) per row or group.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
    check_bits(bits)
    check_bits(weight_bits)
    if check_threshold(threshold) is None and activations == "llm_int8":
        raise ValueError("llm_int8 needs a threshold > 0; use activations='per_token' for no outlier columns")
    check_choice(weight_format, "weight_format", (None, *mx.FORMATS))
    names = _linear_names(model, layers)
    modules = dict(model.named_modules())
    for name in names:
        in_features = modules[name].in_features
        if weight_group_size is not None:
            check_group_size(weight_group_size, in_features)
        for fmt in {weight_format, activations} & set(mx.FORMATS):
            if in_features % mx.FORMATS[fmt].block_size:
                raise ValueError(f"{fmt} needs in_features divisible by {mx.FORMATS[fmt].block_size}; {name!r} has "
                                 f"{in_features}: leave it out with layers=[...]")
    sim = Simulation(activations, bits, weight_bits, tuple(names), weight_group_size, weight_format)
    if activations == "per_tensor":
        if calibration is None:
            raise ValueError("activations='per_tensor' is static: pass calibration batches to set its scales")
        observer = MinMaxObserver(bits, symmetric=True) if observer is None else observer
        if not isinstance(observer, Observer) or observer.bits != bits or observer.granularity != PerTensor():
            raise ValueError(f"observer must be a per-tensor Observer of {bits} bits, got {observer!r}")
        for name, obs in calibrate(model, names, calibration, observer).items():
            lo, hi = obs.range()
            sim.act_qparams[name] = qparams_from_range(lo.reshape(1, 1), hi.reshape(1, 1), bits, obs.symmetric)
    elif calibration is not None:
        raise ValueError(f"calibration is only used by activations='per_tensor', not {activations!r}")
    saved, handles = [], []
    try:
        with torch.no_grad():
            for name in names:
                lin = modules[name]
                saved.append((lin, lin.weight.data))
                lin.weight.data = _fake_quantize_weight(lin.weight.data, sim)
                if activations is not None:
                    handles.append(lin.register_forward_pre_hook(_fake_quantize_input(sim, name, threshold)))
        yield sim
    finally:
        for handle in handles:
            handle.remove()
        for lin, W in saved:
            lin.weight.data = W
