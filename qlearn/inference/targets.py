"""Which Linear layers `quantize_model` replaces, and in which blocks a sequential method visits them.

    targets, skipped = select_targets(model, granularity, exclude=("lm_head",))
    blocks(["encoder.layer.0.attention.self.query", ..., "encoder.layer.1.output.dense", "pooler.dense"])
        -> [["encoder.layer.0.attention.self.query", ...], [..."encoder.layer.1.output.dense"], ["pooler.dense"]]

A block is every target whose name shares the prefix up to its last numeric part ("encoder.layer.3.",
"model.layers.7.", "0" in an nn.Sequential); a name without a numeric part is a block of its own. The blocks
come in the order of `named_modules()`, which for the transformer stacks here is the order they run in.
Found from the names only, so no model class is special-cased.
"""

from __future__ import annotations

import fnmatch
import math

from torch import nn

from ..core.granularity import PerGroup
from ..core.validation import check_bool, check_module
from .linear import check_weight_granularity

__all__ = ["block_prefix", "blocks", "exclude_patterns", "matches", "select_targets"]


def _check_name(value, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a module name (a string), got {type(value).__name__} {value!r}")


def exclude_patterns(exclude, name: str = "exclude") -> tuple[str, ...]:
    """One module name or glob pattern, or a list of them, as a tuple; `name` is the argument's name in errors."""
    if isinstance(exclude, str):
        exclude = (exclude,)
    if not isinstance(exclude, (tuple, list, set, frozenset)) or not all(isinstance(p, str) and p for p in exclude):
        raise TypeError(f"{name} must be a module name or glob pattern (such as 'lm_head'), or a list of them, "
                        f"got {exclude!r}")
    return tuple(exclude)


def matches(name: str, pattern: str) -> bool:
    """A module name matches itself, its parents' names, a trailing part ('lm_head') and glob patterns."""
    _check_name(name, "name")
    _check_name(pattern, "pattern")
    return (name == pattern or name.startswith(pattern + ".") or name.endswith("." + pattern)
            or fnmatch.fnmatchcase(name, pattern))


def _shared_names(model: nn.Module) -> dict[int, list[str]]:
    """id(parameter) -> every name the model reaches it by; two or more names mean tied weights."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return names


def _incompatible(granularity, bad, fitting) -> str:
    """One error message for every layer the granularity cannot split, grouped by in_features."""
    by_in: dict[int, list[str]] = {}
    for name, module, _ in bad:
        by_in.setdefault(module.in_features, []).append(repr(name))
    parts = [f"in_features {k} in {', '.join(v[:3])}{f' and {len(v) - 3} more' if len(v) > 3 else ''}"
             for k, v in sorted(by_in.items())]
    msg = f"{granularity} cannot split these Linear layers ({bad[0][2]}): " + "; ".join(parts)
    if isinstance(granularity, PerGroup):
        g = math.gcd(*(m.in_features for _, m, _ in bad), *(m.in_features for _, m in fitting))
        sizes = [d for d in range(1, g + 1) if g % d == 0]
        msg += f". Group sizes that divide every layer: {[d for d in sizes if d >= 16] or sizes}"
    return msg + ". Exclude them, pick another granularity, or pass skip_incompatible=True"


def select_targets(model: nn.Module, granularity, exclude=(), skip_incompatible: bool = False,
                   quantize_tied: bool = False):
    """([(name, nn.Linear)] to replace, {name: why skipped}); raise before anything for a bad name or shape.

    A Linear whose weight is tied to another module (a causal LM's `lm_head` shares the token embedding) is
    skipped unless `quantize_tied`: quantizing it alone would store a second, integer copy next to the float one.
    """
    patterns = exclude_patterns(exclude)
    modules = dict(check_module(model).named_modules())
    check_bool(skip_incompatible, "skip_incompatible")
    check_bool(quantize_tied, "quantize_tied")
    unused = [p for p in patterns if not any(matches(name, p) for name in modules if name)]
    if unused:
        raise ValueError(f"exclude names {unused} match no module of the model; "
                         f"some module names: {[n for n in modules if n][:5]}")
    targets, skipped, bad, shared = [], {}, [], _shared_names(model)
    for name, module in modules.items():
        if not isinstance(module, nn.Linear) or any(matches(name, p) for p in patterns):
            continue
        tied = [n for n in shared.get(id(module.weight), []) if n != f"{name}.weight"]
        if tied and not quantize_tied:
            skipped[name] = f"weight tied to {tied[0]}: kept in float (quantize_tied=True quantizes a copy)"
            continue
        if type(module) is not nn.Linear:
            skipped[name] = f"{type(module).__name__} is a subclass of nn.Linear that its parent may read directly"
            continue
        if module.weight.is_meta:
            raise ValueError(f"layer {name!r} has its weight on the meta device; load real weights first")
        try:
            check_weight_granularity(granularity, module.weight.shape)
        except ValueError as err:
            bad.append((name, module, str(err)))
            continue
        targets.append((name, module))
    if bad and not skip_incompatible:
        raise ValueError(_incompatible(granularity, bad, targets))
    skipped.update((name, err) for name, _, err in bad)
    if not targets:
        raise ValueError("found no nn.Linear layer to quantize (after exclude and skipping)")
    return targets, skipped


def block_prefix(name: str) -> str:
    """The name up to and including its last numeric part ("model.layers.7.mlp.up_proj" -> "model.layers.7")."""
    _check_name(name, "name")
    parts = name.split(".")
    numeric = [i for i, part in enumerate(parts) if part.isdigit()]
    return name if not numeric else ".".join(parts[:numeric[-1] + 1])


def blocks(names) -> list[list[str]]:
    """`names` grouped by `block_prefix`, in order of first appearance."""
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise TypeError(f"names must be a list of module names, got {type(names).__name__} {names!r:.80}")
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(block_prefix(name), []).append(name)
    return list(groups.values())
