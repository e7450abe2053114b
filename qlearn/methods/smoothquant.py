"""SmoothQuant: move the activation outliers into the weights with one scale per input channel.

Paper: Xiao, Lin, Seznec, Wu, Demouth, Han, "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models", ICML 2023 (arXiv:2211.10438), equation (4):

    Y = (X diag(s)^-1) (diag(s) W^T),    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

The product is unchanged; X / s has a flat channel range (easy for per-tensor int8) and W s takes
the outliers (easy for per-channel int8). alpha moves the difficulty: 0 leaves it in X, 1 in W.

Where 1/s goes: into the norm that produces X (its weight and bias), when that output feeds only
these Linears: a pre-LN decoder (Llama: input_layernorm -> q/k/v_proj, post_attention_layernorm
-> gate/up_proj). In a post-LN encoder (BERT, MiniLM) the LayerNorm's output is also the residual,
so folding 1/s into it would change the model; there the pair has no norm (None) and 1/s runs as
a per-channel multiply on the Linear's input (a buffer `smooth_input_scale` and a forward
pre-hook), which is what torchao does at run time (`act_pre_scale`). Either way `smooth_model`
checks that the output did not change and undoes everything if it did.
Simplified: max|X_j| is the absmax over the calibration batches (no running average).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..core.validation import check_float_tensor
from ..training.calibrate import calibrate, run_batch
from ..core.granularity import PerChannel
from ..training.observers import MinMaxObserver
from .smoothquant_pairs import check_pairs, default_pairs

__all__ = ["SmoothedGroup", "check_alpha", "default_pairs", "input_absmax", "smooth_model", "smoothing_factors"]

EPS = 1e-5  # the clamp of the reference implementation (mit-han-lab/smoothquant, smooth.py)
CHECK_RTOL = 1e-3  # smoothing alone may change the output by float rounding only


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not 0.0 <= alpha <= 1.0:  # also False for NaN
        raise ValueError(f"alpha must be in [0, 1] (0: all difficulty stays in X, 1: all in W), got {alpha}")
    return float(alpha)


def smoothing_factors(act_absmax: torch.Tensor, W, alpha=0.5) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), both maxima clamped to >= 1e-5.

    `W` is one weight or a list of the weights of every Linear that reads this X; the max over W
    runs over all their rows.

    Shapes: act_absmax (in,), W (out, in) or [(out_k, in), ...] -> s (in,) float32.
    """
    check_float_tensor(act_absmax, "act_absmax")
    if act_absmax.ndim != 1 or bool((act_absmax < 0).any()):
        raise ValueError(f"act_absmax must be a 1-D tensor (in,) of non-negative maxima, got shape "
                         f"{tuple(act_absmax.shape)}")
    alpha = check_alpha(alpha)
    weights = [W] if isinstance(W, torch.Tensor) else list(W) if isinstance(W, (list, tuple)) else None
    if not weights:
        raise TypeError(f"W must be a weight tensor (out, in) or a non-empty list of them, got {type(W).__name__}")
    for k, w in enumerate(weights):
        check_float_tensor(w, f"W[{k}]")
        if w.ndim != 2 or w.shape[1] != act_absmax.numel():
            raise ValueError(f"W[{k}] must be (out, {act_absmax.numel()}) to match act_absmax, got {tuple(w.shape)}")
    w_absmax = torch.stack([w.detach().abs().amax(dim=0).float().to(act_absmax.device) for w in weights]).amax(0)
    a = act_absmax.detach().float().clamp(min=EPS)  # (in,)
    return a.pow(alpha) / w_absmax.clamp(min=EPS).pow(1.0 - alpha)  # (in,)


@dataclass(frozen=True, eq=False)
class SmoothedGroup:
    """One smoothing: the norm that took 1/s (None: a run-time input multiply), the Linears that took s."""

    norm: str | None
    linears: tuple[str, ...]
    scale: torch.Tensor  # s (in,)
    act_absmax: torch.Tensor  # max|X_j| (in,) before smoothing


def input_absmax(model: nn.Module, layers, calibration) -> dict[str, torch.Tensor]:
    """max over calibration tokens of |X_j| at the input of each layer: {name: (in,)}."""
    observers = calibrate(model, layers, calibration, MinMaxObserver(granularity=PerChannel(-1)))
    out = {}
    for name, obs in observers.items():
        lo, hi = obs.range()  # each (1, ..., 1, in)
        out[name] = torch.maximum(lo.abs(), hi.abs()).reshape(-1)  # (in,)
    return out


def _divide_input(module, args):
    """Forward pre-hook: X -> X / s, with 1/s stored as the buffer `smooth_input_scale` (in,)."""
    return (args[0] * module.smooth_input_scale.to(args[0].dtype), *args[1:])


def _first_output(out) -> torch.Tensor:
    if isinstance(out, Mapping):
        out = next(v for v in out.values() if isinstance(v, torch.Tensor))
    elif isinstance(out, (tuple, list)):
        out = out[0]
    return out.float()


@torch.no_grad()
def smooth_model(model: nn.Module, calibration, alpha=0.5, pairs=None) -> list[SmoothedGroup]:
    """Smooth every (norm, [Linears]) pair in place: norm.weight, norm.bias /= s; each W[:, j] *= s_j.

    `calibration`: an iterable of batches run as model(**batch) (a dict) or model(batch).
    `pairs` default to `default_pairs(model)`; a None norm applies 1/s to the Linears' input.
    Raises ValueError (and leaves the model as it was) if the smoothed model's output on the
    first batch differs from the original by more than float rounding.

    Shapes: per pair, s (in,); norm weight, bias (in,); each Linear weight (out, in).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    alpha = check_alpha(alpha)
    pairs = default_pairs(model) if pairs is None else pairs
    modules = check_pairs(model, pairs)
    if isinstance(calibration, (torch.Tensor, Mapping)):
        raise TypeError("calibration must be an iterable of batches, e.g. [tokenizer(sentences, ...)], "
                        "not one batch")
    calibration = list(calibration)
    if not calibration:
        raise ValueError("calibration is empty; smoothing needs at least one batch")
    absmax = input_absmax(model, [linears[0] for _, linears in pairs], calibration)
    was_training = model.training
    model.eval()
    reference = _first_output(run_batch(model, calibration[0]))
    saved, handles, groups = [], [], []
    for norm, linears in pairs:
        lins = [modules[n] for n in linears]
        s = smoothing_factors(absmax[linears[0]], [m.weight for m in lins], alpha)  # (in,)
        for lin in lins:
            saved.append((lin.weight, lin.weight.detach().clone()))
            lin.weight.mul_(s.to(lin.weight)[None, :])  # (out, in) * (1, in)
        if norm is None:
            for lin in lins:
                lin.register_buffer("smooth_input_scale", (1.0 / s).to(lin.weight))
                handles.append((lin, lin.register_forward_pre_hook(_divide_input)))
        else:
            for p in (modules[norm].weight, getattr(modules[norm], "bias", None)):
                if isinstance(p, torch.Tensor):
                    saved.append((p, p.detach().clone()))
                    p.div_(s.to(p))
        groups.append(SmoothedGroup(norm, tuple(linears), s, absmax[linears[0]]))
    change = (_first_output(run_batch(model, calibration[0])) - reference).abs().max()
    model.train(was_training)
    if change > CHECK_RTOL * reference.abs().max():
        for p, original in saved:
            p.copy_(original)
        for lin, handle in handles:
            handle.remove()
            del lin.smooth_input_scale
        folded = [norm for norm, _ in pairs if norm is not None]
        raise ValueError(f"smoothing changed the model's output by {float(change):.3g} (max |output| "
                         f"{float(reference.abs().max()):.3g}), so it was undone. A norm whose output also feeds "
                         f"a residual or another layer cannot take 1/s; pass such pairs with None instead of "
                         f"the norm. Norms folded: {folded}")
    return groups
