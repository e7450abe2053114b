"""AWQ at model level: find where each input scale s can be folded, search s, fold 1/s there, then quantize.

    (previous module, [layers])      found from names (FOLDS, and smoothquant_pairs' norms), or passed as data
    input_layernorm          -> q_proj, k_proj, v_proj         Llama (pre-LN): the norm feeds only these
    post_attention_layernorm -> gate_proj, up_proj
    self_attn.v_proj         -> self_attn.o_proj               attention mixes tokens, never channels
    mlp.up_proj              -> mlp.down_proj                  down_proj reads act(gate) * up, linear in up
    attention.self.value     -> attention.output.dense         BERT / MiniLM, the same reason as v -> o

One s is searched per pair, on the concatenated weights of its layers (they read one input X):
s = mean|X|^alpha, alpha* = argmin mean((X W^T - X (Q(W diag s) diag(s)^-1)^T)^2) (awq.search_scale). Then
previous.weight (and bias) /= s, and each layer's W := W diag(s): the float model computes the same function
(checked on the first calibration batch; everything is undone if not). The layers are then quantized by
clip search and rounding on inputs captured after the fold. A layer in no pair (a post-LN encoder's q/k/v,
whose LayerNorm output is also the residual; a layer after a GELU) gets its own s and keeps it as an
AWQLinear buffer. Simplified: the loss is the pair's Linear outputs (llm-awq scores the whole attention
or MLP block), and as there, inputs come from the float (folded) model, not the quantized one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..inference.capture import capture_inputs, run_batch
from ..inference.linear import QuantLinear
from ..inference.block_inputs import BlockInputs, block_chain
from ..inference.targets import block_prefix, blocks
from . import awq
from ._checks import check_positive_int
from ._layers import group_size_of, uniform_layer
from .awq_linear import AWQLinear
from .smoothquant_pairs import default_pairs

FOLDS = (("self_attn.v_proj", ("self_attn.o_proj",)), ("mlp.up_proj", ("mlp.down_proj",)),
         ("attention.self.value", ("attention.output.dense",)))
CHECK_RTOL = 1e-3  # folding may change the float output by rounding only


def find_pairs(model: nn.Module, layer_names) -> list[tuple[str, list[str]]]:
    """(previous module, [layers]) pairs whose layers are all in `layer_names`, found from module names.

    A Linear before a Linear folds only when its outputs are exactly the next layer's inputs (out == in).
    """
    modules, targets = dict(model.named_modules()), set(layer_names)
    pairs = [(norm, list(linears)) for norm, linears in default_pairs(model) if norm is not None]
    for name, module in modules.items():
        for previous, layers in FOLDS:
            if not name.endswith("." + previous) and name != previous:
                continue
            prefix = name[: len(name) - len(previous)]
            names = [prefix + layer for layer in layers]
            if all(isinstance(modules.get(n), nn.Linear) and modules[n].in_features == module.out_features
                   for n in names):
                pairs.append((name, names))
    return [(prev, layers) for prev, layers in pairs if all(n in targets for n in layers)]


def _check_pairs(model: nn.Module, pairs, layer_names) -> list[tuple[str, list[str]]]:
    modules = dict(model.named_modules())
    if not isinstance(pairs, (list, tuple)):
        raise TypeError(f"pairs must be a list of (previous module name, [Linear names]) or None, got {pairs!r}")
    seen = set()
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or isinstance(pair[1], str):
            raise TypeError(f"each pair must be (previous module name, [Linear names]), got {pair!r}")
        previous, layers = pair[0], list(pair[1])
        weight = getattr(modules.get(previous), "weight", None)
        if not layers or not all(n in layer_names for n in layers) or seen & set(layers):
            raise ValueError(f"{layers} must be Linear layers being quantized, each in one pair only")
        seen |= set(layers)
        d_in = {modules[n].in_features for n in layers}
        if not isinstance(weight, torch.Tensor) or len(d_in) != 1 or weight.shape[0] != d_in.pop():
            raise ValueError(f"{previous!r} must be a LayerNorm / RMSNorm / Linear whose output has the width of "
                             f"the inputs of {layers}")
    return [(p, list(ls)) for p, ls in pairs]


@dataclass
class AWQState:
    """What `prepare` did: the folded layers and their scales, notes for the report, and how to undo it."""

    folded: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    saved: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def scale_(self, tensor: torch.Tensor, factor: torch.Tensor) -> None:
        """tensor *= factor in place, remembering the old values for `undo`."""
        self.saved.append((tensor, tensor.detach().clone()))
        tensor.data.mul_(factor.to(tensor.dtype))

    def undo(self) -> None:
        for tensor, old in reversed(self.saved):
            tensor.data.copy_(old)
        self.saved.clear()


def fold(model: nn.Module, previous: str, layers, s: torch.Tensor, state: AWQState | None = None) -> AWQState:
    """previous.weight, previous.bias /= s (a Linear: its rows); each layer's weight W := W diag(s). In place.

    Shapes: s (in,) positive; previous's weight (in,) or (in, k); each layer's weight (out, in).
    """
    state = AWQState() if state is None else state
    prev = model.get_submodule(previous)
    inv = (1.0 / s).to(prev.weight.device)
    state.scale_(prev.weight, inv if prev.weight.ndim == 1 else inv[:, None])  # (in,) or (in, k) rows
    if getattr(prev, "bias", None) is not None:
        state.scale_(prev.bias, inv)
    for name in layers:
        linear = model.get_submodule(name)
        state.scale_(linear.weight, s.to(linear.weight.device))  # (out, in) * (in,)
        state.folded[name] = s
    return state


def _output(value) -> torch.Tensor:
    for key in ("last_hidden_state", "logits"):
        if hasattr(value, key):
            return getattr(value, key)
    return value[0] if isinstance(value, (tuple, list)) else value


def prepare(model: nn.Module, batches, layer_names, bits, granularity, symmetric, pairs=None,
            n_grid: int = 20) -> AWQState:
    """Search one s per (previous, [layers]) pair on the float model's inputs and fold it; check the output.

    s = awq.search_scale(concatenated weights of the layers, X of the pair);  fold(previous, layers, s)
    pairs=None finds them from the names (`find_pairs`); pairs=[] folds nothing (every layer keeps its s).
    """
    check_positive_int(n_grid, "n_grid")
    pairs = find_pairs(model, layer_names) if pairs is None else _check_pairs(model, pairs, layer_names)
    state = AWQState()
    if not pairs:
        return state
    group_size = group_size_of(granularity)
    reference = _output(run_batch(model, batches[0]))
    by_first = {layers[0]: (previous, layers) for previous, layers in pairs}
    try:
        groups = blocks(list(by_first))  # one capture per block bounds the memory
        chain = block_chain(model, groups)
        cached = None if chain is None else BlockInputs(model, chain, batches)
        for index, group in enumerate(groups):
            if cached is not None and index < len(chain):  # the block alone on its cached inputs
                X = cached.capture(index, group, block_prefix(group[0]))
            else:
                X = capture_inputs(model, group, batches)
            for first in group:
                previous, layers = by_first[first]
                W = torch.cat([model.get_submodule(n).weight.detach().float() for n in layers])  # (sum of out, in)
                s, alpha, _, _ = awq.search_scale(W, X[first].to(W.device), bits, group_size, symmetric, n_grid)
                fold(model, previous, layers, s, state)
                state.notes.update({n: f"input scale (alpha={alpha:.2f}) folded into {previous}" for n in layers})
            if cached is not None and index + 1 < len(chain):
                cached.advance(index)  # folding keeps the block's function, so the next inputs are the float ones
            del X
        change = float((_output(run_batch(model, batches[0])) - reference).abs().max())
        if not change <= CHECK_RTOL * float(reference.abs().max()):
            raise ValueError(f"folding the AWQ scales changed the model's output by {change:.3g}: a previous module "
                             "feeds more than its pair's layers; pass pairs=[...] (or pairs=[] to fold nothing)")
    except BaseException:
        state.undo()
        raise
    return state


def quantize_layer(name, linear, X, bits, granularity, symmetric, n_grid: int = 20, clip: bool = True, state=None,
                   activations=None, kernel: str = "auto") -> QuantLinear:
    """A folded layer (W already W diag s, X already X / s): clip search and rounding, a QuantLinear.
    Any other layer: the whole AWQ search on its own X, an AWQLinear that keeps s.

    Shapes: linear.weight (out, in), X (tokens, in) -> the layer's buffers (see QuantLinear, AWQLinear).
    """
    check_positive_int(n_grid, "n_grid")
    group_size = group_size_of(granularity)
    W, X = linear.weight.detach().float(), X.to(linear.weight.device)
    if state is not None and name in state.folded:
        grid = awq.clip_and_round(W, X, bits, group_size, symmetric, n_grid, clip)
        return uniform_layer(linear, grid, activations, kernel)
    qw = awq.quantize_weight(W, X, bits=bits, group_size=group_size, n_grid=n_grid, clip=clip, symmetric=symmetric)
    layer = uniform_layer(linear, qw, activations, kernel, cls=AWQLinear)
    layer.input_scale.copy_(qw.input_scale)
    if state is not None:
        state.notes[name] = f"input scale (alpha={qw.alpha:.2f}) kept on the layer (no module before it to fold into)"
    return layer
