"""Calibration: run a few batches through a model and record the activations of chosen layers.

Static activation quantization needs one (scale, zero_point) per activation tensor, fixed
before inference. We find it by watching real data: a forward hook on each chosen layer
hands the layer's input (or output) of every calibration batch to an observer, and the
observer turns what it saw into QParams.

    observers = calibrate(model, ["0", "2"], X.split(128), MinMaxObserver(bits=8))
    act_qparams = {name: obs.qparams() for name, obs in observers.items()}
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..core.validation import check_bool
from ..inference.capture import first_tensor as _first_tensor
from ..inference.capture import run_batch
from .observers import MinMaxObserver, Observer


def calibrate(model: nn.Module, layers: Iterable[str], batches: Iterable, observer: Observer | None = None,
              where: str = "input", progress: bool = False) -> dict[str, Observer]:
    """Feed the inputs (or outputs) of `layers` over `batches` to a fresh copy of `observer` each.

    layers:   module names as in `model.named_modules()`, e.g. ["0", "2"] for a Sequential
    batches:  an iterable of input tensors, or of (X, y) tuples whose X goes to the model, or of
              dicts of keyword inputs (a tokenizer's output) run as model(**batch)
    observer: an unused Observer used as a template (default MinMaxObserver(8), per tensor)
    where:    'input' (what static activation quantization of the layer needs) or 'output'
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
    if isinstance(batches, (torch.Tensor, Mapping)) or not isinstance(batches, Iterable):
        raise TypeError("batches must be an iterable of batches, for example X.split(128) or [tokenizer(...)], "
                        "not a single tensor or dict")

    observers = {name: copy.deepcopy(observer) for name in layers}

    def hook_for(name):
        def hook(module, args, output):
            observers[name].observe(_first_tensor(args if where == "input" else output, f"the {where} of {name}"))
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
