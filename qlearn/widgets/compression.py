"""Explorers for notebook 07: sweep the sparsity of magnitude pruning, and the distillation temperature."""

from __future__ import annotations

import copy

import ipywidgets as w
import torch
from torch import nn

from ..compression.prune import prunable_layers, prune_model, remove_masks
from ..core.validation import check_float_tensor
from ..data.digits import Digits, accuracy
from ..plots.compression import soft_targets, weight_histogram
from ._base import Explorer

__all__ = ["TEMPERATURES", "pruned_accuracy", "sparsity_explorer", "temperature_explorer"]

TEMPERATURES = (0.5, 1, 2, 3, 4, 6, 8, 12, 20)


def pruned_accuracy(model: nn.Module, data: Digits, sparsity: float, scope: str = "global") -> float:
    """Test accuracy of a magnitude-pruned copy of `model` (no fine-tuning); `model` is unchanged."""
    trial = copy.deepcopy(model)
    prune_model(trial, sparsity, scope=scope)
    return accuracy(remove_masks(trial), data)


def sparsity_explorer(model: nn.Module, data: Digits, layer: str, sparsity_percent: int = 80) -> Explorer:
    """A sparsity slider (0-99 %) and a scope toggle: the weight histogram of `layer` and the accuracy."""
    if not isinstance(data, Digits):
        raise TypeError("data must be a Digits split from qlearn.data.digits.load_digits()")
    if isinstance(sparsity_percent, bool) or not isinstance(sparsity_percent, int) or not 0 <= sparsity_percent <= 99:
        raise ValueError(f"sparsity_percent must be an int from 0 to 99, got {sparsity_percent!r}")
    W = prunable_layers(model, [layer])[layer].weight.detach()
    s_w = w.IntSlider(value=sparsity_percent, min=0, max=99, step=1, description="sparsity %",
                      continuous_update=False)
    scope_w = w.ToggleButtons(options=["global", "layer"], value="global", description="scope")
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([w.HBox([s_w, scope_w]), readout, out]), {"sparsity": s_w, "scope": scope_w}, out,
                        title="sparsity explorer")

    def redraw(*_):
        s, scope = int(s_w.value) / 100, scope_w.value
        trial = copy.deepcopy(model)
        prune_model(trial, s, scope=scope)
        W_s = prunable_layers(remove_masks(trial), [layer])[layer].weight.detach()
        layer_sparsity = float((W_s == 0).float().mean())
        acc = accuracy(trial, data)
        explorer.last = {"sparsity": s, "scope": scope, "accuracy": acc, "layer_sparsity": layer_sparsity}
        readout.value = (f"<b>{scope} pruning at {s:.0%}</b>: layer {layer!r} loses {layer_sparsity:.1%} of its "
                         f"weights; test accuracy without fine-tuning {acc:.1f} %")
        explorer.show(weight_histogram(W, W_s != 0, title=f"layer {layer!r}, {scope} pruning at {s:.0%}"))
        explorer.calls += 1

    s_w.observe(redraw, names="value")
    scope_w.observe(redraw, names="value")
    redraw()
    return explorer


def temperature_explorer(logits: torch.Tensor, T: float = 4) -> Explorer:
    """A temperature slider: the teacher's probabilities softmax(z / T) next to T = 1, on a log scale."""
    check_float_tensor(logits, "logits")
    if logits.ndim != 1:
        raise ValueError(f"logits must be one sample's logits, shape (classes,), got {tuple(logits.shape)}")
    if T not in TEMPERATURES:
        raise ValueError(f"T must be one of {TEMPERATURES}, got {T!r}")
    T_w = w.SelectionSlider(options=list(TEMPERATURES), value=T, description="T", continuous_update=False)
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([T_w, readout, out]), {"T": T_w}, out, title="temperature explorer")

    def redraw(*_):
        T_now = T_w.value
        p = torch.softmax(logits.detach().float() / T_now, dim=0)  # (classes,)
        entropy = float(-(p * p.clamp_min(1e-30).log()).sum())
        explorer.last = {"T": T_now, "top_probability": float(p.max()), "entropy": entropy}
        readout.value = (f"<b>T = {T_now:g}</b>: top class {float(p.max()):.3f}, "
                         f"entropy {entropy:.2f} nats (uniform: {float(torch.log(torch.tensor(float(len(p))))):.2f})")
        explorer.show(soft_targets(logits, sorted({1, T_now})))
        explorer.calls += 1

    T_w.observe(redraw, names="value")
    redraw()
    return explorer
