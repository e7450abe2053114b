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

from dataclasses import dataclass

import torch
from torch import nn

from ..core.granularity import PerChannel
from ..core.validation import check_float_tensor, check_module, check_number
from ..inference.capture import check_batches
from ..training.calibrate import calibrate, run_batch
from ..training.observers import MinMaxObserver
from .folding import FoldState, check_pairs, check_unchanged, default_pairs, fold, model_output

__all__ = ["EPS", "SmoothedGroup", "check_alpha", "default_pairs", "input_absmax", "smooth_model",
           "smoothing_factors"]

EPS = 1e-5  # the clamp of the reference implementation (mit-han-lab/smoothquant, smooth.py)


def check_alpha(alpha) -> float:
    """alpha is a finite number in [0, 1] (0: all difficulty stays in X, 1: all in W)."""
    return check_number(alpha, "alpha (0: all difficulty stays in X, 1: all in W)", 0.0, high=1.0)


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
    if not bool(torch.isfinite(a).all()):
        raise ValueError("act_absmax holds values beyond float32's range; the smoothing factors are float32")
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


@torch.no_grad()
def smooth_model(model: nn.Module, calibration, alpha=0.5, pairs=None) -> list[SmoothedGroup]:
    """Smooth every (norm, [Linears]) pair in place: norm.weight, norm.bias /= s; each W[:, j] *= s_j.

    `calibration`: an iterable of batches run as model(**batch) (a dict) or model(batch).
    `pairs` default to `default_pairs(model)`; a None norm applies 1/s to the Linears' input.
    Raises ValueError (and leaves the model as it was) if the smoothed model's output on the
    first batch differs from the original by more than float rounding.

    Shapes: per pair, s (in,); norm weight, bias (in,); each Linear weight (out, in).
    """
    check_module(model)
    alpha = check_alpha(alpha)
    if pairs is None:
        pairs = default_pairs(model)
        if not pairs:
            raise ValueError("found no (norm, [Linears]) pairs from the module names; pass pairs=[(norm name or None, "
                             "[Linear names]), ...]")
    pairs = check_pairs(model, pairs, allow_none=True)
    if not pairs:
        raise ValueError("pairs is empty; name at least one (norm name or None, [Linear names]) pair")
    modules = dict(model.named_modules())
    if any(hasattr(modules[n], "smooth_input_scale") for _, linears in pairs for n in linears):
        raise ValueError("some of these Linears are already smoothed; smooth a fresh copy of the model")
    calibration = check_batches(calibration, model=model)
    absmax = input_absmax(model, [linears[0] for _, linears in pairs], calibration)
    was_training = model.training
    model.eval()
    reference = model_output(run_batch(model, calibration[0]))
    state, handles, groups = FoldState(), [], []
    try:
        for norm, linears in pairs:
            lins = [modules[n] for n in linears]
            s = smoothing_factors(absmax[linears[0]], [m.weight for m in lins], alpha)  # (in,)
            if norm is None:  # 1/s runs on the input at run time
                for lin in lins:
                    state.scale_(lin.weight, s.to(lin.weight.device))  # (out, in) * (in,)
                    lin.register_buffer("smooth_input_scale", (1.0 / s).to(lin.weight))
                    handles.append((lin, lin.register_forward_pre_hook(_divide_input)))
            else:
                fold(model, norm, linears, s, state)
            groups.append(SmoothedGroup(norm, tuple(linears), s, absmax[linears[0]]))
        dtype = next(model.parameters()).dtype
        check_unchanged(reference, model_output(run_batch(model, calibration[0])), dtype, "smoothing")
    except BaseException:
        state.undo()
        for lin, handle in handles:
            handle.remove()
            del lin.smooth_input_scale
        raise
    finally:
        model.train(was_training)
    return groups
