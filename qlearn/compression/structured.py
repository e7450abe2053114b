"""Structured pruning: remove whole neurons (Linear rows) or channels (Conv2d filters) for real.

Li et al. (2017), "Pruning Filters for Efficient ConvNets": score each output unit j of a
producer layer by the norm of its weights, drop the lowest scores, and delete what depended on
them:

    score_j = || W_producer[j, ...] ||_p                      (p = 2 by default)
    keep the n_out - floor(s * n_out) units with the largest score (at least one)
    producer: weight rows j (and bias j) removed       -> weight (n_keep, ...)
    consumer: the input columns fed by unit j removed  -> weight (m, n_keep * g, ...)

g is how many consumer inputs one unit feeds: 1 for Linear -> Linear or Conv2d -> Conv2d, and
H*W for a Conv2d -> Flatten -> Linear (channel c feeds columns c*H*W .. (c+1)*H*W - 1). Unlike
unstructured zeros, the layers get smaller dense tensors, so the model really uses fewer bytes
and fewer multiply-adds. Which (producer, consumer) pairs to cut is passed in as data, because
only the model's author knows which layer feeds which (any ReLU / pooling in between must act
per unit, as they do here).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..core.modules import replace_module
from ..core.validation import check_float_tensor, check_number
from .prune import check_sparsity

__all__ = ["prune_units", "unit_scores", "units_to_keep"]

_LAYER_TYPES = (nn.Linear, nn.Conv2d)


def unit_scores(W: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Importance of each output unit: ||W[j, ...]||_p. Shapes: W (out, ...) -> scores (out,)."""
    if not isinstance(W, torch.Tensor) or not W.is_floating_point() or W.ndim < 2:
        raise TypeError("W must be a floating-point weight tensor with 2 or more dims, (out, ...)")
    check_float_tensor(W, "W")
    check_number(p, "p", 0.0, low_inclusive=False)  # 1 or 2 are usual
    rows = W.detach().flatten(1)  # (out, in * kh * kw)
    top = rows.abs().amax().clamp(min=torch.finfo(rows.dtype).tiny)  # scale first: |w|^p must not overflow
    return (rows / top).norm(p=p, dim=1) * top  # (out,)


def units_to_keep(W: torch.Tensor, sparsity: float, p: float = 2) -> torch.Tensor:
    """Sorted indices of the n_out - floor(s * n_out) units with the largest ||W[j]||_p (at least 1).

    Shapes: W (out, ...) -> keep (n_keep,), int64, on W's device.
    """
    scores = unit_scores(W, p)
    n_keep = max(1, W.shape[0] - math.floor(check_sparsity(sparsity) * W.shape[0]))
    return torch.topk(scores, n_keep).indices.sort().values


def _slice_out(layer: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A copy of `layer` with only the output units `keep`."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    else:
        new = nn.Conv2d(layer.in_channels, len(keep), layer.kernel_size, layer.stride, layer.padding,
                        layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])  # (n_keep, in) or (n_keep, c_in, kh, kw)
        if layer.bias is not None:
            new.bias.copy_(layer.bias[keep])  # (n_keep,)
    return new


def _slice_in(layer: nn.Module, keep: torch.Tensor, n_units: int) -> nn.Module:
    """A copy of `layer` that only reads the inputs fed by units `keep` (of `n_units`)."""
    n_in = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    if n_in % n_units:
        raise ValueError(f"consumer has {n_in} inputs, not a multiple of the producer's {n_units} units")
    if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or n_in != n_units):
        raise ValueError("a Conv2d consumer must have groups=1 and in_channels equal to the producer's out units")
    g = n_in // n_units
    # Unit j feeds inputs j*g .. j*g + g - 1 (g = H*W after a Flatten, else 1).
    cols = (keep[:, None] * g + torch.arange(g, device=keep.device)).flatten()  # (n_keep * g,)
    if isinstance(layer, nn.Linear):
        new = nn.Linear(len(cols), layer.out_features, bias=layer.bias is not None)
    else:
        new = nn.Conv2d(len(cols), layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                        layer.dilation, 1, layer.bias is not None, layer.padding_mode)
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, cols])  # (out, n_keep * g) or (out, n_keep, kh, kw)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def prune_units(model: nn.Module, pairs: Sequence[tuple[str, str]], sparsity: float, p: float = 2) -> nn.Module:
    """A smaller copy of `model`: for each (producer, consumer) pair, remove floor(s * n_out) units.

    pairs: module names, e.g. [('0', '2'), ('2', '4')] for digits.mlp(): Linear '0' feeds
    Linear '2' through a ReLU. Each producer must be a Linear or Conv2d (it may also be the
    consumer of an earlier pair); each consumer a Linear or Conv2d. The model is not changed.

    Shapes: producer weight (out, ...) -> (n_keep, ...); consumer weight (m, out * g, ...) -> (m, n_keep * g, ...).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise TypeError("pairs must be a non-empty list of (producer name, consumer name) tuples")
    check_sparsity(sparsity)
    originals = dict(model.named_modules())
    keeps = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(n, str) for n in pair)):
            raise TypeError(f"each pair must be a (producer name, consumer name) tuple of strings, got {pair!r}")
        for name in pair:
            if name not in originals:
                raise ValueError(f"no module named {name!r}; the model has {[n for n in originals if n]}")
            if type(originals[name]) not in _LAYER_TYPES:
                raise TypeError(f"module {name!r} is a {type(originals[name]).__name__}; "
                                "only Linear and Conv2d are supported")
        if any(pair[0] == earlier for earlier, _ in pairs[:len(keeps)]):
            raise ValueError(f"producer {pair[0]!r} appears in more than one pair; each layer is cut once")
        # Scores come from the original weights, so the order of the pairs does not matter.
        keeps.append(units_to_keep(originals[pair[0]].weight, sparsity, p))
    new = copy.deepcopy(model)
    for (producer, consumer), keep in zip(pairs, keeps):
        modules = dict(new.named_modules())
        n_units = originals[producer].weight.shape[0]
        replace_module(new, consumer, _slice_in(modules[consumer], keep, n_units))
        replace_module(new, producer, _slice_out(dict(new.named_modules())[producer], keep))
    return new

