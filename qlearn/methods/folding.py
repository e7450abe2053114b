"""Where a per-input-channel factor s can be folded, folding it, and checking that the float model did not change.

AWQ and SmoothQuant both multiply a Linear's input channels by 1/s and its weight columns by s:

    Y = (X diag(s)^-1) (W diag(s))^T          the product is unchanged

and both put the 1/s into the module that produces X, when that module's output feeds only these Linears:

    (previous module, [layers])                                          found from module names
    input_layernorm          -> self_attn.q_proj, k_proj, v_proj         Llama (pre-LN): the norm feeds only these
    post_attention_layernorm -> mlp.gate_proj, up_proj
    self_attn.v_proj         -> self_attn.o_proj      (AWQ: LINEAR_FOLDS)  attention mixes tokens, never channels
    mlp.up_proj              -> mlp.down_proj         (AWQ)               down_proj reads act(gate) * up, linear in up
    attention.self.value     -> attention.output.dense (AWQ)              BERT / MiniLM, the same reason as v -> o
    None -> attention.self.query, key, value; None -> intermediate.dense  BERT / MiniLM (post-LN)

None means no module can take 1/s: a post-LN encoder's LayerNorm output is also the residual. SmoothQuant then
divides the input at run time; AWQ keeps s on the layer (AWQLinear).

`FoldState` remembers every tensor it scales so that `undo()` restores the model exactly, and `check_unchanged`
compares the model's output with a reference at a tolerance that follows the model's dtype: folding rounds
W diag(s) and w / s once more, which costs about one unit in the last place of the dtype per weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..core.validation import (
    check_bool,
    check_float_dtype,
    check_float_tensor,
    check_module,
    check_names,
    check_same_shape,
)

__all__ = ["FOLD_RTOL", "LINEAR_FOLDS", "NORM_FOLLOWERS", "FoldState", "check_pairs", "check_unchanged",
           "default_pairs", "find_pairs", "fold", "model_output"]

NORM_FOLLOWERS = {"input_layernorm": ("self_attn", ("q_proj", "k_proj", "v_proj")),
                  "post_attention_layernorm": ("mlp", ("gate_proj", "up_proj"))}
LINEAR_FOLDS = (("self_attn.v_proj", ("self_attn.o_proj",)), ("mlp.up_proj", ("mlp.down_proj",)),
                ("attention.self.value", ("attention.output.dense",)))
# The largest change of max|output| that folding may cause, relative to max|output|, by the model's dtype.
# float32 rounding is ~1e-7 per operation; bfloat16's unit roundoff is 2^-8 = 0.0039, float16's 2^-11. A fold into
# the wrong module changes the output by O(1), far above every bound.
FOLD_RTOL = {torch.float32: 1e-3, torch.float64: 1e-6, torch.float16: 2e-2, torch.bfloat16: 1e-1}


def default_pairs(model: nn.Module) -> list[tuple[str | None, list[str]]]:
    """(norm name or None, [Linear names]) found from module names: Llama-style decoders and BERT encoders."""
    names = dict(check_module(model).named_modules())
    pairs = []
    for name in names:
        parent, _, leaf = name.rpartition(".")
        prefix = parent + "." if parent else ""
        if leaf in NORM_FOLLOWERS:  # pre-LN: the norm's output feeds only these Linears
            block, children = NORM_FOLLOWERS[leaf]
            linears = [f"{prefix}{block}.{c}" for c in children]
            if all(n in names for n in linears):
                pairs.append((name, linears))
        elif name.endswith("attention.self") and all(f"{name}.{c}" in names for c in ("query", "key", "value")):
            pairs.append((None, [f"{name}.{c}" for c in ("query", "key", "value")]))  # post-LN: no fold
        elif leaf == "intermediate" and f"{name}.dense" in names:
            pairs.append((None, [f"{name}.dense"]))
    return pairs


def find_pairs(model: nn.Module, layer_names) -> list[tuple[str, list[str]]]:
    """AWQ's (previous module, [layers]) pairs whose layers are all in `layer_names`: norms and LINEAR_FOLDS.

    A Linear before a Linear folds only when its outputs are exactly the next layer's inputs (out == in).
    """
    modules, targets = dict(check_module(model).named_modules()), set(check_names(layer_names, model, "layer_names"))
    pairs = [(norm, list(linears)) for norm, linears in default_pairs(model) if norm is not None]
    for name, module in modules.items():
        for previous, layers in LINEAR_FOLDS:
            if not name.endswith("." + previous) and name != previous:
                continue
            prefix = name[: len(name) - len(previous)]
            names = [prefix + layer for layer in layers]
            if all(isinstance(modules.get(n), nn.Linear) and modules[n].in_features == module.out_features
                   for n in names):
                pairs.append((name, names))
    return [(prev, layers) for prev, layers in pairs if all(n in targets for n in layers)]


def check_pairs(model: nn.Module, pairs, allow_none: bool, targets=None) -> list[tuple[str | None, list[str]]]:
    """Raise unless every pair is (a module name or None, [nn.Linear names sharing in_features]).

    The previous module must have a weight whose first dimension is that in_features (a norm (in,), a Linear
    (in, k)); None is allowed only when `allow_none` (SmoothQuant's run-time divide). With `targets`, every
    layer must be one of them (AWQ folds only into layers being quantized); no layer may be in two pairs.
    """
    modules = dict(check_module(model).named_modules())
    check_bool(allow_none, "allow_none")
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f"pairs must be a list of (previous module name{' or None' if allow_none else ''}, "
                        f"[Linear names]), got {type(pairs).__name__}")
    seen, out = set(), []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or isinstance(pair[1], str) \
                or not isinstance(pair[1], (list, tuple)):
            raise TypeError(f"each pair must be (previous module name, [Linear names]), got {pair!r}")
        previous, layers = pair[0], list(pair[1])
        if not layers or not all(isinstance(n, str) and isinstance(modules.get(n), nn.Linear) for n in layers):
            raise ValueError(f"{layers} must be a non-empty list of nn.Linear names of the model")
        if targets is not None and not all(n in targets for n in layers):
            raise ValueError(f"{layers} must all be Linear layers being quantized")
        if seen & set(layers):
            raise ValueError(f"{sorted(seen & set(layers))} appear in two pairs; each layer may be in one pair only")
        seen |= set(layers)
        d_in = {modules[n].in_features for n in layers}
        if len(d_in) != 1:
            raise ValueError(f"the Linears {layers} read one input, so they need the same in_features, got {d_in}")
        if previous is None and not allow_none:
            raise ValueError(f"pair {pair!r}: a previous module is needed here")
        if previous is not None:
            weight = getattr(modules.get(previous), "weight", None) if isinstance(previous, str) else None
            if not isinstance(weight, torch.Tensor) or weight.shape[0] != next(iter(d_in)):
                raise ValueError(f"{previous!r} must be a norm or Linear module of the model whose output has the "
                                 f"width {next(iter(d_in))} of the inputs of {layers}")
        out.append((previous, layers))
    return out


@dataclass
class FoldState:
    """What was folded: each layer's factor s, notes for a report, and the original tensors for `undo`."""

    folded: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    saved: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def scale_(self, tensor: torch.Tensor, factor: torch.Tensor, divide: bool = False) -> None:
        """tensor *= factor (or /= factor) in place, computed in float32 and rounded once to the tensor's dtype,
        remembering the old values for `undo`."""
        self.saved.append((tensor, tensor.detach().clone()))
        t, f = tensor.data.float(), factor.float()
        tensor.data.copy_(t / f if divide else t * f)

    def undo(self) -> None:
        """Put every scaled tensor back as it was, newest first."""
        for tensor, old in reversed(self.saved):
            tensor.data.copy_(old)
        self.saved.clear()


def fold(model: nn.Module, previous: str, layers, s: torch.Tensor, state: FoldState | None = None) -> FoldState:
    """previous.weight, previous.bias /= s (a Linear: its rows); each layer's weight W := W diag(s). In place.

    Shapes: s (in,) positive; previous's weight (in,) or (in, k); each layer's weight (out, in).
    """
    check_module(model)
    previous = check_names([previous], model, "previous")[0]
    layers = check_names(layers, model, "layers")
    check_float_tensor(s, "s")
    in_features = {model.get_submodule(n).weight.shape[1] for n in layers}
    if s.ndim != 1 or {s.shape[0]} != in_features or not bool((s > 0).all()) \
            or not bool(torch.isfinite(s.float()).all()):
        raise ValueError(f"s must be a 1-D tensor of {sorted(in_features)} positive factors within float32's range, "
                         f"got shape {tuple(s.shape)}")
    if state is not None and not isinstance(state, FoldState):
        raise TypeError(f"state must be a FoldState or None, got {type(state).__name__}")
    state = FoldState() if state is None else state
    prev = model.get_submodule(previous)
    s_prev = s.to(prev.weight.device)
    state.scale_(prev.weight, s_prev if prev.weight.ndim == 1 else s_prev[:, None], divide=True)  # (in,) or (in, k)
    if getattr(prev, "bias", None) is not None:
        state.scale_(prev.bias, s_prev, divide=True)
    for name in layers:
        linear = model.get_submodule(name)
        state.scale_(linear.weight, s.to(linear.weight.device))  # (out, in) * (in,)
        state.folded[name] = s
    return state


def model_output(value) -> torch.Tensor:
    """The main tensor of a model's output: last_hidden_state, logits, the first element, or the tensor itself."""
    for key in ("last_hidden_state", "logits"):
        if hasattr(value, key):
            return getattr(value, key)
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, torch.Tensor)), None)
    value = value[0] if isinstance(value, (tuple, list)) and value else value
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"a model's output must be a tensor, a tuple or dict holding one, or an object with "
                        f"logits / last_hidden_state; got {type(value).__name__}")
    return value


def check_unchanged(reference: torch.Tensor, output: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Raise ValueError unless max|output - reference| <= FOLD_RTOL[dtype] * max|reference|.

    Shapes: reference and output (...), the same shape.
    """
    check_float_tensor(reference, "reference")
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise TypeError(f"output must be a floating-point tensor, got {type(output).__name__}")
    check_same_shape(reference, output, ("reference", "output"))
    check_float_dtype(dtype)
    reference, output = reference.detach().float(), output.detach().float()
    change, top = float((output - reference).abs().max()), float(reference.abs().max())
    rtol = FOLD_RTOL.get(dtype, 1e-3)
    if not change <= rtol * top:  # also catches NaN
        raise ValueError(f"{what} changed the model's output by {change:.3g} (max |output| {top:.3g}; a {dtype} model "
                         f"may change by float rounding only, {rtol:g} relative), so it was undone. A module whose "
                         "output also feeds a residual or another layer cannot take 1/s: pass pairs=[...] without it")
