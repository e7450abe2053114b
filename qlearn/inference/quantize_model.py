"""Quantize a whole model: replace its nn.Linear layers by QuantLinear, in place, all or nothing.

    for each nn.Linear named `name` in the model, unless `name` is excluded:
        qparams = METHODS[method](name, W, bits, symmetric, granularity)    # "rtn": min-max, round to nearest
        replace it by QuantLinear.from_linear(linear, qparams=qparams, activations=...)

A Linear whose weight is tied to another module (a causal LM's `lm_head` shares the token
embedding) is kept in float by default and listed in `report.skipped` with the name it is tied
to: quantizing it alone would store a second, integer copy next to the float embedding.

Every check (exclude names, group sizes, meta weights) and every new layer is done before the
first replacement, so a failure leaves the model untouched. `method` is the hook that later
methods (GPTQ, AWQ, HQQ) plug into: a function that returns the QParams for one weight (see
`register_method`).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.granularity import PerChannel, PerGroup
from ..core.primitives import QParams, choose_qparams
from ..core.validation import check_bits, check_bool
from .linear import KERNELS, QuantLinear, check_activations, check_weight_granularity


def _rtn(name: str, W, bits: int, symmetric: bool, granularity) -> QParams:
    """Round to nearest with min-max scales: the baseline every better method is compared with."""
    return choose_qparams(W, bits=bits, symmetric=symmetric, granularity=granularity)


METHODS: dict[str, Callable[..., QParams]] = {"rtn": _rtn}


def register_method(name: str, fn: Callable[..., QParams]) -> None:
    """Add a weight-quantization method: `fn(name, W, bits, symmetric, granularity) -> QParams`."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a method name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"a method must be callable, got {type(fn).__name__}")
    METHODS[name] = fn


def _tensor_bytes(t: torch.Tensor) -> int:
    """numel * element size; a tensor subclass (optimum-quanto, torchao) is the sum of its inner tensors."""
    if type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def model_size_bytes(model: nn.Module) -> int:
    """Bytes the model really stores: every parameter and buffer once, at its own element size.

    Packed uint8 codes count one byte per 2 (int4) or 4 (int2) weights; scales, zero points,
    biases, embeddings and LayerNorms count in full. Quantized tensor subclasses (optimum-quanto's
    frozen weights) count their integer data and scales. A fast kernel's private weight copy
    (`QuantLinear._cache`) is not a buffer and is not counted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return sum(_tensor_bytes(t) for t in tensors.values())


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_model` did: layers replaced, layers skipped (name -> reason), bytes before and after."""

    replaced: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def ratio(self) -> float:
        """bytes_after / bytes_before."""
        return self.bytes_after / self.bytes_before if self.bytes_before else float("nan")

    def summary(self) -> str:
        """One line: layers replaced and the size change, e.g. for a notebook to print."""
        return (f"{len(self.replaced)} Linear layers replaced, {len(self.skipped)} skipped; "
                f"{self.bytes_before / 2**20:.2f} MiB -> {self.bytes_after / 2**20:.2f} MiB "
                f"({self.ratio:.3f}x)")


def _exclude_patterns(exclude) -> tuple[str, ...]:
    if isinstance(exclude, str):
        exclude = (exclude,)
    if not isinstance(exclude, (tuple, list, set, frozenset)) or not all(isinstance(p, str) and p for p in exclude):
        raise TypeError(f"exclude must be a list of module names or glob patterns (such as 'lm_head'), got {exclude!r}")
    return tuple(exclude)


def _matches(name: str, pattern: str) -> bool:
    """A module name matches itself, its parents' names, a trailing part ('lm_head') and glob patterns."""
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


def quantize_model(model: nn.Module, bits: int = 8, granularity=PerChannel(), activations=None, exclude=(),
                   method: str = "rtn", symmetric: bool = True, kernel: str = "auto",
                   skip_incompatible: bool = False, quantize_tied: bool = False,
                   progress: bool = False) -> QuantizeReport:
    """Replace every nn.Linear of `model` (not in `exclude`) by a `bits`-bit QuantLinear, in place.

    activations=None keeps float activations (W8A16, W4A16, ...); activations=8 quantizes them
    dynamically per token (W8A8). A layer whose shape the granularity cannot split (say in=100
    with PerGroup(128)) raises a ValueError naming it, before anything is replaced; with
    `skip_incompatible=True` such layers are kept in float and listed in `report.skipped`.
    Subclasses of nn.Linear (such as MultiheadAttention's out_proj, whose weight its parent
    reads directly) are always skipped and listed. The default PerChannel() fits every shape;
    for groups on SmolLM2 (in_features 576 and 1536) PerGroup(64) or PerGroup(32) fit, PerGroup(128)
    does not, and the error lists the group sizes that do. A Linear with a tied weight (`lm_head`)
    is skipped and listed unless `quantize_tied=True`, which gives it its own integer copy.

    Shapes: each Linear weight (out, in) -> QuantLinear buffers, see `qlearn.inference.linear`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Linear):
        raise TypeError("quantize_model replaces Linear layers inside a model; for a single layer use "
                        "QuantLinear.from_linear(linear, ...)")
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    check_bool(skip_incompatible, "skip_incompatible")
    check_bool(quantize_tied, "quantize_tied")
    check_bool(progress, "progress")
    check_activations(activations)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: {sorted(METHODS)}")
    patterns = _exclude_patterns(exclude)
    modules = dict(model.named_modules())
    unused = [p for p in patterns if not any(_matches(name, p) for name in modules if name)]
    if unused:
        raise ValueError(f"exclude names {unused} match no module of the model; "
                         f"some module names: {[n for n in modules if n][:5]}")

    targets, skipped, bad, shared = [], {}, [], _shared_names(model)
    for name, module in modules.items():
        if not isinstance(module, nn.Linear) or any(_matches(name, p) for p in patterns):
            continue
        if type(module) is not nn.Linear:
            skipped[name] = f"{type(module).__name__} is a subclass of nn.Linear that its parent may read directly"
            continue
        tied = [n for n in shared.get(id(module.weight), []) if n != f"{name}.weight"]
        if tied and not quantize_tied:
            skipped[name] = f"weight tied to {tied[0]}: kept in float (quantize_tied=True quantizes a copy)"
            continue
        if module.weight.is_meta:
            raise ValueError(f"layer {name!r} has its weight on the meta device; load real weights first")
        try:
            check_weight_granularity(granularity, module.weight.shape)
        except (ValueError, TypeError) as err:
            if isinstance(err, TypeError):
                raise
            bad.append((name, module, str(err)))
            continue
        targets.append((name, module))
    if bad and not skip_incompatible:
        raise ValueError(_incompatible(granularity, bad, targets))
    skipped.update((name, err) for name, _, err in bad)
    if not targets:
        raise ValueError("found no nn.Linear layer to quantize (after exclude and skipping)")

    bytes_before = model_size_bytes(model)
    new = {}
    for name, linear in tqdm(targets, desc="quantize", disable=not progress):
        qparams = METHODS[method](name, linear.weight.detach(), bits, symmetric, granularity)
        new[name] = QuantLinear.from_linear(linear, qparams=qparams, activations=activations, kernel=kernel)
    for name, layer in new.items():  # every new layer exists: now swap them in
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer)
    return QuantizeReport(tuple(new), skipped, bytes_before, model_size_bytes(model))
