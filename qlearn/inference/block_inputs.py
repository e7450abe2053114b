"""Calibrate a deep model block by block: run the calibration batches once to the first block, then one block at a time.

    chain = block_chain(model, groups)          # the blocks ("model.layers.0", ...) as modules, or None
    inputs = BlockInputs(model, chain, batches)   # one partial forward pass: each batch's (args, kwargs) of block 0
    X = inputs.capture(0, group)                  # {name: X (tokens, in)}: block 0 alone, forward hooks
    inputs.advance(0)                             # block 0's outputs (quantized or not) become block 1's inputs

    for group, X in calibration_blocks(model, names, batches):   # the loop quantize_model and AWQ share
        ...                                                      # quantize (or fold) the group's layers on X

Capturing the inputs of block k by running the whole model costs k blocks per batch, so a model of B blocks
costs about B^2 / 2 block passes; this costs two per block (capture, then advance), as the GPTQ reference
does (it caches the first decoder layer's inputs and feeds the layers in turn). It applies when the blocks
are consecutive children of one nn.ModuleList that feed each other (a transformer's layers: each block's
first output is the next one's hidden state); `block_chain` returns None otherwise and the caller runs the
whole model. Every keyword input of the first block (attention mask, position embeddings) is reused for
every block; a key/value cache is turned off (the blocks run once each, without generation).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.validation import check_module, check_names
from .capture import attention_mask, capture_inputs, run_batch
from .targets import block_prefix, blocks

__all__ = ["CACHE_KEYS", "BlockInputs", "block_chain", "calibration_blocks"]

CACHE_KEYS = ("cache", "past_key_values", "past_key_value", "layer_past")


def block_chain(model: nn.Module, groups: list[list[str]]) -> list[nn.Module] | None:
    """The block modules of the leading groups that are consecutive children of one nn.ModuleList, or None.

    A group is a block's layer names (targets.blocks); the chain stops at the first group that is not the
    next child (a pooler or head after the layers), and the caller captures those by running the model.

    Shapes: groups [[layer names of block 0], ...] -> [block 0, block 1, ...] (len <= len(groups)) or None.
    """
    check_module(model)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, (list, tuple)) or not all(
            isinstance(g, (list, tuple)) and g and all(isinstance(n, str) for n in g) for g in groups):
        raise TypeError(f"groups must be a list of non-empty lists of layer names (targets.blocks(names)), got "
                        f"{groups!r:.80}")
    modules = dict(model.named_modules())
    chain, parent, last = [], None, None
    for group in groups:
        prefix = block_prefix(group[0])
        up, _, index = prefix.rpartition(".")
        block = modules.get(prefix)
        fits = (all(block_prefix(n) == prefix for n in group) and index.isdigit() and block is not None
                and not isinstance(block, nn.Linear) and isinstance(modules.get(up), nn.ModuleList)
                and (parent is None or (up == parent and int(index) == last + 1)))
        if not fits:
            break
        chain.append(block)
        parent, last = up, int(index)
    return chain or None


class _Reached(Exception):
    """Raised by the first block's hook to skip the rest of the forward pass."""


class BlockInputs:
    """Each calibration batch's inputs (args, kwargs) of the current block, moved one block at a time."""

    def __init__(self, model: nn.Module, chain: list[nn.Module], batches: list):
        check_module(model)
        inside = {id(m) for m in model.modules()}
        if not isinstance(chain, (list, tuple)) or not chain or not all(
                isinstance(b, nn.Module) and id(b) in inside for b in chain):
            raise ValueError(f"chain must be a non-empty list of blocks of the model (block_chain(model, groups)), "
                             f"got {chain!r:.80}")
        self.chain = chain
        self.masks = [attention_mask(b) for b in batches]
        calls = []

        def hook(module, args, kwargs):
            kwargs = {k: (None if k in CACHE_KEYS else v) for k, v in kwargs.items()}
            if "use_cache" in kwargs:
                kwargs["use_cache"] = False
            calls.append((args, kwargs))
            raise _Reached

        handle = chain[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad():
                for batch in batches:
                    count = len(calls)
                    try:
                        run_batch(model, batch)
                    except _Reached:
                        pass
                    if len(calls) == count:
                        raise ValueError("the first block never ran on a calibration batch")
        finally:
            handle.remove()
        if not all(args or "hidden_states" in kwargs for args, kwargs in calls):
            raise ValueError("the first block takes no positional or hidden_states input to feed the next block")
        self.calls = calls

    def _run(self, block: nn.Module, call):
        args, kwargs = call
        return block(*args, **kwargs)

    def capture(self, index: int, names: list[str], prefix: str) -> dict[str, torch.Tensor]:
        """{name: X (tokens, in)} of the named layers of block `index`, whose names start with `prefix` + ".".

        Shapes: names of block `index` -> {name: X (sum of tokens, in) float32}.
        """
        relative = [n[len(prefix) + 1:] for n in names]
        X = capture_inputs(self.chain[index], relative, self.calls, run=self._run, masks=self.masks)
        return {n: X[r] for n, r in zip(names, relative)}

    @torch.no_grad()
    def advance(self, index: int) -> None:
        """Replace every batch's input by the output of block `index` as it is now (quantized or not)."""
        block, calls = self.chain[index], []
        for args, kwargs in self.calls:
            out = block(*args, **kwargs)
            hidden = out[0] if isinstance(out, (tuple, list)) else out  # (batch, seq, hidden)
            if args:
                calls.append(((hidden, *args[1:]), kwargs))
            else:
                calls.append(((), {**kwargs, "hidden_states": hidden}))
        self.calls = calls


def calibration_blocks(model: nn.Module, names, batches: list):
    """Yield (group, X) block by block: the layer names of one block and their calibration inputs.

    X = {name: (tokens, in) float32} is captured from the model as it is when the block is reached, so whatever
    the caller does to a block before asking for the next one (swap in quantized layers, fold scales) shapes the
    inputs of the blocks after it. The leading blocks of a transformer stack run alone on cached inputs
    (BlockInputs, two block passes each); any group after them (a pooler, a head) is captured by running the
    whole model.

    Shapes: names [layer names] -> each step (group [names of one block], {name: X (tokens, in)}).
    """
    groups = blocks(check_names(names, check_module(model)))
    chain = block_chain(model, groups)
    cached = None if chain is None else BlockInputs(model, chain, batches)
    for index, group in enumerate(groups):
        if cached is not None and index < len(chain):  # the block alone, on the outputs of the block before
            X = cached.capture(index, group, block_prefix(group[0]))
        else:
            X = capture_inputs(model, group, batches)
        yield group, X
        del X
        if cached is not None and index + 1 < len(chain):
            cached.advance(index)
