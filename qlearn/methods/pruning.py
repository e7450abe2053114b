"""One-shot pruning of a language model: magnitude, Wanda or SparseGPT, block by block on calibration data.

Notebook 07 pruned an 8x8-digits MLP and retrained it (`qlearn.compression.prune.prune_model`: magnitude only, no
data, masks attached with torch's prune utility so that fine-tuning keeps the zeros). An LLM is not retrained after
pruning: like GPTQ, the pruning is one-shot, each layer pruned once on the inputs a few calibration batches give it.
This is that model-level pass, the one the references run (locuslab/wanda lib/prune.py prune_wanda, IST-DASLab/
sparsegpt opt.py opt_sequential):

    for each block (a decoder layer), in order:
        X = the inputs of the block's Linear layers, captured on the outputs of the blocks ALREADY pruned
        for each Linear of the block:  W <- prune_weight(W, X[name], sparsity, pattern)   (in place)

The inputs of every layer of a block are captured before any of them is pruned (as both references do), and the
next block sees the pruned block's outputs (sequential, `qlearn.inference.block_inputs.calibration_blocks`, the
loop quantize_model and AWQ share). method="magnitude" needs no data: each layer loses its floor(s * numel)
smallest |w| (compression.prune.magnitude_mask, per layer as the Wanda paper's baseline), or with a pattern the n
smallest |w| of every m consecutive inputs of a row. Wanda and SparseGPT (their files hold the tensor-level
algorithms) prune every output row alike.

Left dense, and said so in the report: a Linear whose weight is tied to another module (a causal LM's lm_head
shares the token embedding: pruning it would prune the embedding too), a layer whose in_features the pattern's m
does not divide, anything in `exclude`. The weights stay dense float tensors holding zeros; what a sparse format
would store is `qlearn.compression.sparse.sparse_model_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..compression.prune import NM_PATTERNS, check_pattern, magnitude_mask, nm_mask
from ..core.granularity import PerChannel
from ..core.validation import check_bits, check_bool, check_choice, check_module, check_number, check_weight
from ..inference.block_inputs import calibration_blocks
from ..inference.capture import check_batches
from ..inference.targets import select_targets
from . import sparsegpt, wanda

__all__ = ["PRUNERS", "PruneReport", "magnitude_weight", "prune_model"]

PRUNERS = ("magnitude", "wanda", "sparsegpt")
_SPARSEGPT_OPTIONS = ("block_size", "damp", "group_size", "symmetric", "mask")


@dataclass(frozen=True)
class PruneReport:
    """What `prune_model` did: the fraction of zeros of each pruned layer, the layers left dense and why.

    masks: {layer: keep-mask (out, in) bool}, True where the weight was kept (distillation holds them).
    """

    method: str
    sparsity: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    pattern: str | None = None
    bits: int | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def total(self) -> float:
        """Zeros over all pruned weights: sum of zeros / sum of sizes of the pruned layers."""
        sizes = {n: m.numel() for n, m in self.masks.items()}
        return sum(self.sparsity[n] * sizes[n] for n in sizes) / max(1, sum(sizes.values()))

    def summary(self) -> str:
        """One line, for a notebook to print."""
        shape = self.pattern or "unstructured"
        joint = f", kept weights on a {self.bits}-bit grid" if self.bits else ""
        return (f"{self.method} ({shape}{joint}): {len(self.sparsity)} layers pruned to {self.total:.1%} zeros, "
                f"{len(self.skipped)} left dense")


def magnitude_weight(W: torch.Tensor, sparsity: float = 0.5, pattern: str | None = None,
                     return_mask: bool = False):
    """Magnitude pruning, the baseline: W with its smallest |w| set to 0.

    pattern=None: the floor(sparsity * numel) smallest |w| of the whole layer (one threshold per layer);
    pattern="2:4" or "4:8": the n smallest |w| of every m consecutive inputs of a row.

    Shapes: W (out, in) -> W_p (out, in) in W's dtype [, keep (out, in) bool].
    """
    check_weight(W)
    sparsity = check_number(sparsity, "sparsity", 0.0, high=1.0, high_inclusive=False)
    nm = check_pattern(pattern, W.shape[1], sparsity)
    check_bool(return_mask, "return_mask")
    keep = nm_mask(W.detach().float().abs(), *nm) if nm is not None else magnitude_mask(W, sparsity)  # (out, in)
    W_p = torch.where(keep, W.detach(), torch.zeros((), dtype=W.dtype, device=W.device))  # (out, in)
    return (W_p, keep) if return_mask else W_p


def _targets(model, exclude, pattern):
    """[(name, Linear)] to prune and {name: why left dense}."""
    targets, skipped = select_targets(model, PerChannel(), exclude=exclude)
    skipped = {n: (f"{why.split(':')[0]}: left dense (pruning it would prune that tensor too)"
                   if why.startswith("weight tied to") else why) for n, why in skipped.items()}
    if pattern is not None:
        m = int(pattern.split(":")[1])
        for name, linear in targets:
            if linear.in_features % m:
                skipped[name] = f"in_features {linear.in_features} is not a multiple of {m}: no {pattern} pattern"
        targets = [(n, layer) for n, layer in targets if n not in skipped]
    if not targets:
        raise ValueError(f"no Linear layer left to prune: {skipped}")
    return targets, skipped


def _prune_one(method, linear, X, sparsity, pattern, bits, options):
    """The tensor-level method on one layer; returns its keep-mask and writes the pruned weight in place."""
    W = linear.weight
    if method == "magnitude":
        W_p, keep = magnitude_weight(W, sparsity, pattern, return_mask=True)
    elif method == "wanda":
        W_p, keep = wanda.prune_weight(W, X.to(W.device), sparsity, pattern, return_mask=True)
    else:
        W_p, keep = sparsegpt.prune_weight(W, X.to(W.device), sparsity, pattern, bits=bits, return_mask=True,
                                           **options)
    with torch.no_grad():
        W.copy_(W_p)
    return keep


def prune_model(model: nn.Module, method: str = "sparsegpt", sparsity: float = 0.5, pattern: str | None = None,
                calibration=None, bits: int | None = None, exclude=(), progress: bool = False,
                **options) -> PruneReport:
    """Prune every nn.Linear of `model` in place, one-shot, block by block; return a PruneReport.

    method: "magnitude" (no data needed), "wanda" or "sparsegpt" (both need `calibration`: batches run as
    model(**batch) for a dict, else model(batch), as quantize_model's).
    sparsity in [0, 1), or pattern "2:4" / "4:8" (then sparsity must be n / m = 0.5, the default).
    bits: SparseGPT's joint mode (kept weights on a bits-bit grid, still stored as float); sparsegpt only.
    **options go to sparsegpt.prune_weight: block_size, damp, group_size, symmetric, mask ("row" or "block").

    Shapes: each Linear weight (out, in) -> the same shape, with zeros.
    """
    check_module(model)
    check_choice(method, "method", PRUNERS)
    sparsity = check_number(sparsity, "sparsity", 0.0, high=1.0, high_inclusive=False)
    check_choice(pattern, "pattern", (None,) + NM_PATTERNS)
    if pattern is not None:
        check_pattern(pattern, int(pattern.split(":")[1]), sparsity)
    if bits is not None:
        check_bits(bits)
        if method != "sparsegpt":
            raise ValueError(f"bits= is SparseGPT's joint mode (prune and quantize in one pass); method={method!r} "
                             "only prunes: use method='sparsegpt' or leave bits=None")
    unknown = sorted(set(options) - set(_SPARSEGPT_OPTIONS if method == "sparsegpt" else ()))
    if unknown:
        raise TypeError(f"unknown options {unknown} for method {method!r}; sparsegpt takes {list(_SPARSEGPT_OPTIONS)}")
    check_bool(progress, "progress")
    if method == "magnitude":
        batches = None if calibration is None else check_batches(calibration, model=model)  # checked, unused
    elif calibration is None:
        raise ValueError(f"method {method!r} needs calibration batches (the inputs X of each layer); "
                         "pass calibration=[batch, ...] or use method='magnitude'")
    else:
        batches = check_batches(calibration, model=model)
    targets, skipped = _targets(model, exclude, pattern)
    layers, masks = dict(targets), {}

    if method == "magnitude":
        for name, linear in tqdm(targets, disable=not progress, desc="magnitude"):
            masks[name] = _prune_one(method, linear, None, sparsity, pattern, bits, options)
    else:
        steps = calibration_blocks(model, list(layers), batches)
        for group, X in tqdm(steps, disable=not progress, desc=method):
            for name in group:
                try:
                    masks[name] = _prune_one(method, layers[name], X[name], sparsity, pattern, bits, options)
                except (ValueError, TypeError) as err:
                    raise type(err)(f"layer {name!r}: {err}") from err
    zeros = {n: float((layers[n].weight == 0).float().mean()) for n in masks}
    return PruneReport(method, zeros, skipped, pattern, bits, masks)
