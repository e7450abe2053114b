"""Which (norm, [Linears]) pairs SmoothQuant smooths: found from module names, or passed as data.

    Llama-style decoder (pre-LN)          input_layernorm          -> self_attn.q_proj, k_proj, v_proj
                                          post_attention_layernorm -> mlp.gate_proj, up_proj
    BERT / MiniLM encoder (post-LN)       None -> attention.self.query, key, value
                                          None -> intermediate.dense
None means: no norm can take 1/s (a post-LN LayerNorm's output is also the residual), so
`smooth_model` applies 1/s to the Linears' input at run time.
"""

from __future__ import annotations

import torch
from torch import nn


def default_pairs(model: nn.Module) -> list[tuple[str | None, list[str]]]:
    """(norm name or None, [Linear names]) found from module names: Llama-style decoders and BERT encoders."""
    names = dict(model.named_modules())
    followers = {"input_layernorm": ("self_attn", ("q_proj", "k_proj", "v_proj")),
                 "post_attention_layernorm": ("mlp", ("gate_proj", "up_proj"))}
    pairs = []
    for name in names:
        parent, _, leaf = name.rpartition(".")
        prefix = parent + "." if parent else ""
        if leaf in followers:  # pre-LN: the norm's output feeds only these Linears
            block, children = followers[leaf]
            linears = [f"{prefix}{block}.{c}" for c in children]
            if all(n in names for n in linears):
                pairs.append((name, linears))
        elif name.endswith("attention.self") and all(f"{name}.{c}" in names for c in ("query", "key", "value")):
            pairs.append((None, [f"{name}.{c}" for c in ("query", "key", "value")]))  # post-LN: no fold
        elif leaf == "intermediate" and f"{name}.dense" in names:
            pairs.append((None, [f"{name}.dense"]))
    return pairs


def check_pairs(model: nn.Module, pairs) -> dict[str, nn.Module]:
    """Raise unless every pair is (a norm with weight (in,) or None, [nn.Linear names sharing in])."""
    modules = dict(model.named_modules())
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise ValueError("pairs must be a non-empty list of (norm name or None, [Linear names]); none were "
                         "given or found from the module names")
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or isinstance(pair[1], str):
            raise TypeError(f"each pair must be (norm name or None, [Linear names]), got {pair!r}")
        norm, linears = pair
        if not linears or not all(isinstance(modules.get(n), nn.Linear) for n in linears):
            raise ValueError(f"{list(linears)} must be a non-empty list of nn.Linear names of the model")
        d_in = {modules[n].in_features for n in linears}
        if len(d_in) != 1:
            raise ValueError(f"the Linears {list(linears)} read one input, so they need the same in_features, got {d_in}")
        if any(hasattr(modules[n], "smooth_input_scale") for n in linears):
            raise ValueError(f"{list(linears)} are already smoothed; smooth a fresh copy of the model")
        if norm is not None:
            w = getattr(modules.get(norm), "weight", None)
            if not isinstance(w, torch.Tensor) or w.shape != (d_in.pop(),):
                raise ValueError(f"{norm!r} must be a norm module with a weight of shape (in,) = "
                                 f"({modules[linears[0]].in_features},)")
    return modules
