"""Calibration: run a few batches through a model and record the activations of chosen layers.

Static activation quantization needs one (scale, zero_point) per activation tensor, fixed
before inference. We find it by watching real data: a forward hook on each chosen layer
hands the layer's input (or output) of every calibration batch to an observer, and the
observer turns what it saw into QParams.

    observers = calibrate(model, ["0", "2"], X.split(128), MinMaxObserver(bits=8))
    act_qparams = {name: obs.qparams() for name, obs in observers.items()}

A model whose QuantLinear layers have static per-tensor activations (quantize_model(..., activations=8,
activation_granularity=PerTensor())) is calibrated in one call, which sets each layer's `activation_scale`:

    calibrate_activations(model, batches)           # MinMaxObserver(8, symmetric=True) per layer
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..core.granularity import PerTensor
from ..core.validation import check_bool
from ..inference.capture import first_tensor as _first_tensor
from ..inference.capture import run_batch
from .observers import MinMaxObserver, Observer

__all__ = ["calibrate", "calibrate_activations", "static_activation_layers"]


def calibrate(model: nn.Module, layers: Iterable[str], batches: Iterable, observer: Observer | None = None,
              where: str = "input", progress: bool = False, transform=None) -> dict[str, Observer]:
    """Feed the inputs (or outputs) of `layers` over `batches` to a fresh copy of `observer` each.

    layers:   module names as in `model.named_modules()`, e.g. ["0", "2"] for a Sequential
    batches:  an iterable of input tensors, or of (X, y) tuples whose X goes to the model, or of
              dicts of keyword inputs (a tokenizer's output) run as model(**batch)
    observer: an unused Observer used as a template (default MinMaxObserver(8), per tensor)
    where:    'input' (what static activation quantization of the layer needs) or 'output'
    transform: None, or a function (module, tensor) -> tensor applied before the observer sees it
    The model runs in eval mode under torch.no_grad(); its mode is restored and every hook
    is removed afterwards, even on an error.

    Shapes: each batch X (n, ...) as the model expects; the observers see the hooked tensors.
    Returns {layer name: observer}; call `.qparams()` or `.range()` on each.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layers, str) or not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a list of module names such as ['0', '2'], got {layers!r}")
    layers = list(layers)
    modules = dict(model.named_modules())
    unknown = [name for name in layers if not isinstance(name, str) or name not in modules]
    if not layers or unknown:
        known = [name for name in modules if name]
        raise ValueError(f"layers must be a non-empty list of module names of the model; unknown: {unknown}, "
                         f"known names: {known}")
    observer = MinMaxObserver() if observer is None else observer
    if not isinstance(observer, Observer):
        raise TypeError(f"observer must be an Observer such as MinMaxObserver(bits=8), got {type(observer).__name__}")
    if observer.batches:
        raise ValueError("observer must be unused (it is copied once per layer); pass a fresh one")
    if where not in ("input", "output"):
        raise ValueError(f"where must be 'input' or 'output', got {where!r}")
    check_bool(progress, "progress")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be None or a function (module, tensor) -> tensor, got {transform!r}")
    if isinstance(batches, (torch.Tensor, Mapping)) or not isinstance(batches, Iterable):
        raise TypeError("batches must be an iterable of batches, for example X.split(128) or [tokenizer(...)], "
                        "not a single tensor or dict")

    observers = {name: copy.deepcopy(observer) for name in layers}

    def hook_for(name):
        def hook(module, args, output):
            t = _first_tensor(args if where == "input" else output, f"the {where} of {name}")
            observers[name].observe(t if transform is None else transform(module, t))
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            total = len(batches) if hasattr(batches, "__len__") else None
            for batch in tqdm(batches, total=total, disable=not progress, desc="calibrating"):
                run_batch(model, batch)
                n += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if n == 0:
        raise ValueError("batches is empty; calibration needs at least one batch")
    return observers


def static_activation_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose activations are static per tensor and need an `activation_scale`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [name for name, m in model.named_modules() if getattr(m, "static_activations", False)]


def calibrate_activations(model: nn.Module, batches: Iterable, observer: Observer | None = None,
                          progress: bool = False) -> dict[str, Observer]:
    """Set the static activation scale of every per-tensor W8A8 layer of `model` from `batches`.

    s_x = observer's symmetric per-tensor scale of what the layer quantizes (its input, times SmoothQuant's
    `smooth_input_scale` when it has one); MinMaxObserver: s_x = max |X| / 127 over every batch.
    observer: an unused symmetric PerTensor() Observer (default MinMaxObserver(bits, symmetric=True)) with
    the layers' activation bits. All layers are calibrated in one pass; while their scales are unknown they
    run with float activations (int8 weights, reference kernel), as SmoothQuant calibrates on the float model.

    Shapes: each layer's input X (..., in) -> activation_scale (1, 1).
    Returns {layer name: observer}.
    """
    names = static_activation_layers(model)
    if not names:
        raise ValueError("the model has no layer with static per-tensor activations; build them with "
                         "quantize_model(model, activations=8, activation_granularity=PerTensor())")
    modules = dict(model.named_modules())
    bits = {modules[n].activations for n in names}
    if observer is None:
        observer = MinMaxObserver(bits=min(bits), symmetric=True)
    if not isinstance(observer, Observer):
        raise TypeError(f"observer must be an Observer such as MinMaxObserver(8, symmetric=True), got "
                        f"{type(observer).__name__}")
    if not observer.symmetric or observer.granularity != PerTensor() or bits != {observer.bits}:
        raise ValueError(f"observer must be symmetric, PerTensor() and of the layers' {sorted(bits)} bits "
                         f"(the integer kernel has no zero point), got {observer!r}")
    float_inputs = _FloatActivations([modules[n] for n in names])
    with float_inputs:
        observers = calibrate(model, names, batches, observer, progress=progress,
                              transform=lambda module, x: module.activation_input(x))
    for name, obs in observers.items():
        modules[name].set_activation_scale(obs.qparams().scale.reshape(-1)[0])
    return observers


class _FloatActivations:
    """While active, the given layers run with float activations (their scale is not known yet)."""

    def __init__(self, layers):
        self.layers = layers

    def __enter__(self):
        self.saved = [(layer.activations, layer.kernel) for layer in self.layers]
        for layer in self.layers:
            layer.activations, layer.kernel = None, "reference"

    def __exit__(self, *exc):
        for layer, (bits, kernel) in zip(self.layers, self.saved):
            layer.activations, layer.kernel = bits, kernel
        return False
