"""Unstructured magnitude pruning: zero the weights with the smallest |w|, layer by layer or globally.

Han et al. (2015), "Learning both Weights and Connections for Efficient Neural Networks":
keep the weights that matter most by the simplest measure, their magnitude.

    layer-wise:  in each weight W, remove the k = floor(s * W.numel()) smallest |w|
    global:      pool every layer's |w|, remove the k = floor(s * total) smallest overall,
                 so layers with many small weights lose more than layers with large ones
    per row:     row_mask(scores, k) removes the k lowest scores of every output row, and
                 nm_mask(scores, n, m) n of every m consecutive inputs (2:4, 4:8: NVIDIA's sparse pattern);
                 with scores = |W| they are magnitude pruning per row and to 2:4; Wanda and SparseGPT
                 (qlearn.methods) pass their own scores

A removed weight is set to exactly 0 and kept at 0 while the model is fine-tuned: the mask is
attached with `torch.nn.utils.prune.custom_from_mask`, which recomputes
`weight = weight_orig * weight_mask` before every forward pass. The dense tensor keeps its
shape, so the model is no smaller and no faster until the zeros are stored sparsely or whole
rows are removed (see `prune_structured.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..core.validation import check_choice, check_float_tensor, check_positive_int

__all__ = ["NM_PATTERNS", "SCOPES", "check_pattern", "check_sparsity", "global_magnitude_masks", "magnitude_mask",
           "magnitude_prune", "nm_mask", "prunable_layers", "prune_model", "remove_masks", "row_mask",
           "weight_sparsity"]

SCOPES = ("layer", "global")


def check_sparsity(sparsity, name: str = "sparsity") -> float:
    """Return `sparsity` as a float if it is a number in [0, 1], else raise."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"{name} must be a number from 0 to 1 (the fraction of weights removed), got {sparsity!r}")
    if not 0.0 <= float(sparsity) <= 1.0 or math.isnan(sparsity):
        raise ValueError(f"{name} must be from 0 to 1 (the fraction of weights removed), got {sparsity}")
    return float(sparsity)


def _smallest_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask over a flat tensor of scores: False at the k smallest, True elsewhere. Shapes: (n,) -> (n,)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        keep[torch.topk(scores, k, largest=False).indices] = False
    return keep


def magnitude_mask(W: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that removes exactly floor(sparsity * W.numel()) entries of W, the smallest in |W|.

    mask[i] = False for the k = floor(s * N) smallest |W[i]| (ties broken by torch.topk), True elsewhere.

    Shapes: W (...) -> mask (...), dtype bool, on W's device.
    """
    check_float_tensor(W, "W")
    k = math.floor(check_sparsity(sparsity) * W.numel())
    return _smallest_mask(W.detach().abs().flatten(), k).reshape(W.shape)  # (...) like W


def magnitude_prune(W: torch.Tensor, sparsity: float) -> torch.Tensor:
    """W with its floor(sparsity * N) smallest-magnitude entries set to 0: W * magnitude_mask(W, s).

    Shapes: W (...) -> W_pruned (...), same dtype and device.
    """
    return W * magnitude_mask(W, sparsity)


def global_magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Keep-masks that remove the floor(s * total) smallest |w| pooled over all `weights`.

    Shapes: {name: W (...)} -> {name: mask (...)} (bool), the same names and shapes.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError("weights must be a non-empty dict {name: weight tensor}")
    for name, W in weights.items():
        check_float_tensor(W, f"weights[{name!r}]")
    devices = {W.device for W in weights.values()}
    if len(devices) > 1:
        raise ValueError(f"all weights must be on one device for global pruning, got {sorted(map(str, devices))}")
    scores = torch.cat([W.detach().abs().flatten().float() for W in weights.values()])  # (total,)
    keep = _smallest_mask(scores, math.floor(check_sparsity(sparsity) * scores.numel()))
    masks, start = {}, 0
    for name, W in weights.items():
        masks[name] = keep[start:start + W.numel()].reshape(W.shape)  # (...) like W
        start += W.numel()
    return masks


def prunable_layers(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """The modules to prune, by name. `layers=None` means every module with a weight of 2 or more dims.

    Returns {module name: module}, e.g. {'0': Linear(64, 128), '2': Linear(128, 128), ...}.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layers is None:
        chosen = {n: m for n, m in modules.items()
                  if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim >= 2}
        if not chosen:
            raise ValueError("model has no module with a weight of 2 or more dims to prune")
        return chosen
    if isinstance(layers, str) or not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a list of module names, got {layers!r}")
    chosen = {}
    for name in layers:
        if name not in modules:
            raise ValueError(f"no module named {name!r} in the model; it has {[n for n in modules if n]}")
        if not isinstance(getattr(modules[name], "weight", None), torch.Tensor):
            raise ValueError(f"module {name!r} ({type(modules[name]).__name__}) has no weight to prune")
        chosen[name] = modules[name]
    if not chosen:
        raise ValueError("layers is empty; name at least one module to prune")
    return chosen


def prune_model(model: nn.Module, sparsity: float, layers: Iterable[str] | None = None,
                scope: str = "layer") -> dict[str, torch.Tensor]:
    """Magnitude-prune `model` in place and keep the zeros fixed: returns {layer name: keep-mask}.

    scope='layer': each layer loses floor(s * its size); scope='global': floor(s * total) overall.
    The masks are attached with torch.nn.utils.prune.custom_from_mask (pruning an already
    pruned layer again only removes more). Call `remove_masks` to make the zeros permanent.
    """
    check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    chosen = prunable_layers(model, layers)
    weights = {n: m.weight for n, m in chosen.items()}
    if scope == "global":
        masks = global_magnitude_masks(weights, sparsity)
    else:
        masks = {n: magnitude_mask(W, sparsity) for n, W in weights.items()}
    for name, module in chosen.items():
        torch_prune.custom_from_mask(module, "weight", masks[name])
    return {n: m.weight_mask.bool() for n, m in chosen.items()}


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning permanent: every masked weight becomes a plain Parameter holding its zeros."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")
    return model


def weight_sparsity(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, float]:
    """Fraction of exact zeros in each chosen layer's weight, plus 'total' over all of them."""
    chosen = prunable_layers(model, layers)
    zeros = {n: int((m.weight == 0).sum()) for n, m in chosen.items()}
    sizes = {n: m.weight.numel() for n, m in chosen.items()}
    out = {n: zeros[n] / sizes[n] for n in chosen}
    out["total"] = sum(zeros.values()) / sum(sizes.values())
    return out


# ---------- masks chosen per output row: a fixed count per row, or the n:m pattern ----------

NM_PATTERNS = ("2:4", "4:8")


def check_pattern(pattern, in_features: int, sparsity: float | None = None) -> tuple[int, int] | None:
    """(n, m) for an n:m pattern string (n zeros in every m consecutive inputs), None for None (unstructured).

    Raises unless `pattern` is None or one of NM_PATTERNS, m divides in_features, and `sparsity` (when given
    with a pattern) equals n / m: the pattern fixes the sparsity, a different one would be silently ignored.
    """
    check_positive_int(in_features, "in_features")
    if check_choice(pattern, "pattern", (None,) + NM_PATTERNS) is None:
        return None
    n, m = (int(part) for part in pattern.split(":"))
    if in_features % m:
        raise ValueError(f"pattern {pattern!r} needs in_features to be a multiple of {m}, got {in_features}; "
                         "prune this layer unstructured (pattern=None) instead")
    if sparsity is not None and sparsity != n / m:
        raise ValueError(f"pattern {pattern!r} removes {n} of every {m} weights, a sparsity of {n / m:g}; got "
                         f"sparsity={sparsity:g}: leave sparsity at its default or pass {n / m:g}")
    return n, m


def _check_scores(scores) -> torch.Tensor:
    check_float_tensor(scores, "scores")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (out_features, in_features), got shape {tuple(scores.shape)}")
    return scores


def row_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask that removes the k lowest scores of every row (ties: the earlier column goes first).

    mask[i, j] = False for the k smallest scores[i, :] (a stable sort decides ties), True elsewhere.
    With scores = |W| this is magnitude pruning per output row.

    Shapes: scores (out, in) -> mask (out, in) bool.
    """
    _check_scores(scores)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= scores.shape[1]:
        raise ValueError(f"k must be an int from 0 to {scores.shape[1]} (the weights removed per row), got {k!r}")
    keep = torch.ones_like(scores, dtype=torch.bool)
    return keep.scatter_(1, scores.sort(dim=1, stable=True).indices[:, :k], False)


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask with exactly n zeros in every m consecutive entries of a row: the n lowest scores of each m.

    For each row i and each group j0 = 0, m, 2m, ...: mask[i, j0:j0+m] is False at the n smallest scores
    (ties: the earlier column goes first), True elsewhere. With scores = |W| and n:m = 2:4 this is
    magnitude pruning to NVIDIA's 2:4 pattern.

    Shapes: scores (out, in), m divides in -> mask (out, in) bool.
    """
    _check_scores(scores)
    check_positive_int(n, "n (zeros in every m)")
    check_positive_int(m, "m")
    if n >= m or scores.shape[1] % m:
        raise ValueError(f"need 1 <= n < m and m dividing in_features={scores.shape[1]}, got n={n}, m={m}")
    groups = scores.reshape(scores.shape[0], -1, m)  # (out, in / m, m)
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.sort(dim=2, stable=True).indices[..., :n], False)  # (out, in / m, m)
    return keep.reshape(scores.shape)  # (out, in)
