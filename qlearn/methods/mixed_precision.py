"""Bits per layer under a memory budget: measure each block's sensitivity, then choose the widths that fit.

The idea behind EXL2's per-layer bit rates and Unsloth's "dynamic" quants, in its simplest form. Objective:

    min over b_1..b_L  sum_l KL_l(b_l)   subject to   sum_l bytes_l(b_l) <= budget

bytes_l(b) counts the block's weights as a GGUF file stores them (the file llama.cpp maps into memory).

KL_l(b) is the KL divergence of the model's next-token distribution when only block l is quantized to b bits
(the others stay float), with the method that will ship: `block_sensitivity(..., bits=(4, 5, 8), method="gptq")`
measures it at every width. Cheaper, and only an estimate: measure at one width and extend by the rule that each
extra bit halves the rounding error, so quarters its square, KL_l(b) ~= KL_l(m) * 4^(m - b). The rule fits RTN
roughly. On SmolLM2 (g64, measured per decoder block) GPTQ's fifth bit divided the KL by 4.5 (median) and bits
six to eight by 50, not 64, and a plan built on the rule lost to the uniform choice it should beat;
benchmarks/bench_gguf.py measures such a table per Linear and prints its medians.
The widths are chosen exactly (a multiple-choice knapsack, solved by dynamic programming over the bytes).
Simplified: the blocks' errors are taken to add up (they interact a little).
"""

from __future__ import annotations

import collections
import contextlib
import math

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.granularity import PerGroup
from ..core.modules import replace_module
from ..core.validation import check_bits, check_bool, check_module, check_number, check_positive_int
from ..inference.capture import check_batches
from ..inference.quantize_model import quantize_model
from ..inference.registry import get_method
from ..inference.targets import block_prefix
from .ggml_quants import BLOCK_BYTES
from .rtn import quantize_weight as rtn_weight

__all__ = ["allocate_bits", "block_bytes", "block_sensitivity", "decoder_blocks", "estimated_kl", "gguf_type",
           "quantize_mixed"]


def decoder_blocks(model: nn.Module) -> dict[str, list[str]]:
    """Block prefix ("model.layers.7") -> the names of its nn.Linear layers, in the order they run.

    Linears with no numeric part in their name (a tied lm_head) are left out: they are no block's.
    """
    check_module(model)
    out: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        prefix = block_prefix(name) if name else name
        if type(module) is nn.Linear and prefix != name:
            out.setdefault(prefix, []).append(name)
    if not out:
        raise ValueError("the model has no nn.Linear inside a numbered block (such as model.layers.0.mlp.up_proj)")
    return out


def _check_blocks(model: nn.Module, blocks) -> dict[str, list[str]]:
    """`blocks` checked: each a non-empty list of the model's nn.Linear layers, no layer in two blocks or tied."""
    if blocks is None:
        return decoder_blocks(model)
    modules = dict(model.named_modules())
    if not isinstance(blocks, dict) or not blocks:
        raise TypeError("blocks must be None or a non-empty dict: block name -> list of Linear names")
    uses = collections.Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    owner: dict[str, str] = {}
    for block, names in blocks.items():
        if not isinstance(names, (list, tuple)) or not names:
            raise TypeError(f"blocks[{block!r}] must be a non-empty list of Linear names, got {names!r}")
        bad = [n for n in names if not isinstance(n, str) or type(modules.get(n)) is not nn.Linear]
        if bad:
            raise ValueError(f"blocks[{block!r}] must list nn.Linear layers of the model; not one: {bad[:3]}")
        for name in names:
            if name in owner:
                raise ValueError(f"{name} is in blocks {owner[name]!r} and {block!r}: a layer can be in one block only "
                                 "(its bytes and its width would count twice)")
            owner[name] = block
            if uses[id(modules[name].weight)] > 1:
                raise ValueError(f"{name}'s weight is tied to another module's (an lm_head tied to the embedding): "
                                 "quantizing it would change both; leave it out of blocks")
    return blocks


def _parent(names) -> str | None:
    """The one decoder block (block_prefix) all of `names` are in, or None if they span several."""
    parents = {block_prefix(name) for name in names}
    return parents.pop() if len(parents) == 1 else None


def _per_layer(qmethod) -> bool:
    """Whether the method rounds each Linear from that Linear's own inputs alone (no prepare or finish step that
    changes other layers, as AWQ's folding does): then layers of one decoder block can share a quantize_model call
    and come out as if each had been quantized alone, from the block's inputs captured once."""
    return qmethod.prepare is None and qmethod.finish is None


def _quantize_only(model, names, bits, group_size, method, calibration, linears, options):
    """quantize_model on `names` alone (every other Linear of `linears` stays float), `bits` rounded as
    quantize_mixed rounds it: groups of `group_size`, symmetric from 6 bits on. Returns its QuantizeReport."""
    keep = set(names)
    return quantize_model(model, bits=bits, granularity=PerGroup(group_size), method=method, calibration=calibration,
                          exclude=[name for name in linears if name not in keep], symmetric=_symmetric(bits),
                          **options)


@contextlib.contextmanager
def _quantized(model, names, bits, group_size, method, calibration, linears, options):
    """`names` quantized to `bits` by `method` in place, as quantize_mixed would; everything put back on exit.

    Yields name -> the new weight tensor (RTN, rounded in place: fast) or the new layer (any other method, by
    _quantize_only). A method with a `prepare` or `finish` step may change other
    weights too (AWQ folds its scales into the norms before): every parameter is restored from a copy on exit.
    """
    if method == "rtn":
        saved = {name: model.get_submodule(name).weight.data for name in names}
        new = {name: rtn_weight(w, bits=bits, group_size=group_size, symmetric=_symmetric(bits)).dequantize()
               for name, w in saved.items()}
        try:
            for name, w in new.items():
                model.get_submodule(name).weight.data = w
            yield new
        finally:
            for name, w in saved.items():
                model.get_submodule(name).weight.data = w
        return
    snapshot = None if _per_layer(get_method(method)) else \
        {key: value.detach().clone() for key, value in model.state_dict().items()}
    old = {name: model.get_submodule(name) for name in names}
    try:
        _quantize_only(model, names, bits, group_size, method, calibration, linears, options)
        yield {name: model.get_submodule(name) for name in names}
    finally:
        for name, layer in old.items():
            replace_module(model, name, layer)
        if snapshot is not None:
            with torch.no_grad():
                for key, value in model.state_dict().items():
                    value.copy_(snapshot[key])


def _swap(model, name, value):
    """Put `value` (a weight tensor or a layer) in place of `name`'s; return what was there."""
    if isinstance(value, torch.Tensor):
        weight = model.get_submodule(name).weight
        old, weight.data = weight.data, value
        return old
    return replace_module(model, name, value)


def _measured_together(blocks: dict, method: str) -> list[list[str]]:
    """The blocks, grouped so that one quantize_model call per group and width serves them all.

    Blocks under one parent (such as per-Linear blocks of one decoder layer) share it when the method works per
    layer (_per_layer): quantize_model captures a parent's inputs once, with every parent before it float, so each
    Linear comes out exactly as if it had been quantized alone. Any other block is measured alone.
    """
    per_layer = _per_layer(get_method(method))
    groups: dict = {}
    for block, names in blocks.items():
        parent = _parent(names)
        groups.setdefault(parent if per_layer and parent is not None else (block,), []).append(block)
    return list(groups.values())


@torch.no_grad()
def block_sensitivity(model: nn.Module, tokenizer, text: str, bits=4, group_size: int = 64,
                      blocks: dict | None = None, window: int = 128, progress: bool = False, method: str = "rtn",
                      calibration=None, **options) -> dict:
    """KL(p_float || p_block) in nats for each block: only that block's Linears quantized to `bits` by `method`.

        KL_l(b) = 1/N * sum_t sum_v p(v | x_<=t) * (log p(v | x_<=t) - log p_l,b(v | x_<=t))
    bits: an int -> {block: KL}; a tuple of widths -> {block: {bits: KL}} (what allocate_bits takes measured).
    Each width is rounded as quantize_mixed rounds it: groups of `group_size`, symmetric from 6 bits on.
    method "rtn" rounds the weights in place (fast); any other registered method ("gptq", "awq", ...) runs
    quantize_model with `calibration` and **options on that block alone, everything else float. Blocks under one
    parent (per-Linear blocks, {name: [name]}) share one such call per parent and width when the method rounds
    each Linear on its own inputs (GPTQ; not AWQ, whose scales span layers): each Linear is then swapped in alone.
    The same numbers as one call per block, with 7x fewer quantize_model calls on a Llama block. Every layer (and
    whatever a method's `prepare` changed) is put back each time: the model ends as it began. Same positions as
    metrics.kl_divergence with one window of the first `window` tokens of `text`.
    Shapes: text -> ids (1, w) -> logits (w, vocab) per block and width -> {block: KL} or {block: {bits: KL}}.
    """
    check_module(model)
    widths = _check_widths(bits)
    check_positive_int(group_size, "group_size")
    check_positive_int(window, "window")
    check_bool(progress, "progress")
    qmethod = get_method(method)
    blocks = _check_blocks(model, blocks)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if method == "rtn" and (options or calibration is not None):
        raise ValueError("method 'rtn' takes no calibration or options here; they are for method='gptq' and the like")
    if qmethod.needs_calibration and calibration is None:
        raise ValueError(f"method {method!r} needs calibration data: pass calibration=[batch, ...] (token ids)")
    linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :window]  # (1, w)
    ids = ids.to(next(model.parameters()).device)
    logp_ref = torch.log_softmax(model(ids).logits[0].double(), dim=-1)  # (w, vocab)
    calibration = None if calibration is None else check_batches(calibration, model=model)  # used many times
    out: dict = {}

    def kl() -> float:
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)  # (w, vocab)
        return float((logp_ref.exp() * (logp_ref - logp)).sum(-1).mean())

    for group in tqdm(_measured_together(blocks, method), desc="sensitivity", disable=not progress):
        names = [name for block in group for name in blocks[block]]
        for b in widths:
            with _quantized(model, names, b, group_size, method, calibration, linears, options) as new:
                if len(group) == 1:  # the block as quantized, with whatever else its method changed
                    out.setdefault(group[0], {})[b] = kl()
                    continue
            for block in group:  # the group's layers, each block's swapped in alone
                saved = {}
                try:
                    for name in blocks[block]:
                        saved[name] = _swap(model, name, new[name])
                    out.setdefault(block, {})[b] = kl()
                finally:
                    for name, old in saved.items():
                        _swap(model, name, old)
    return {block: out[block] if isinstance(bits, (tuple, list)) else out[block][bits] for block in blocks}


def _check_widths(bits) -> list[int]:
    if isinstance(bits, (tuple, list)):
        if not bits:
            raise ValueError("bits must be an int or a non-empty tuple of widths, got ()")
        return sorted({check_bits(b) for b in bits})
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int or a tuple of widths such as (4, 5, 8), got {bits!r}")
    return [check_bits(bits)]


def _symmetric(bits: int) -> bool:
    """Whether a `bits`-bit grid is rounded symmetric here: from 6 bits on, so that it ships as Q8_0 (no min)."""
    return check_bits(bits) >= 6


def gguf_type(bits: int) -> str:
    """The GGML type export_gguf writes a `bits`-bit grid in: 2-4 bits Q4_1, 5 Q5_1, 6-8 (symmetric) Q8_0."""
    check_bits(bits)
    return "Q4_1" if bits <= 4 else "Q5_1" if bits == 5 else "Q8_0"


def block_bytes(model: nn.Module, bits_options=(4, 5, 8), blocks: dict | None = None) -> dict[str, dict[int, int]]:
    """Bytes each block's Linears take in a GGUF file at each width (groups of 32 or a multiple of 32).

    bytes_l(b) = sum over the block's weights W (out, in) of out * in / 32 * (bytes of a gguf_type(b) block)
    (Q4_1 20, Q5_1 24, Q8_0 34 bytes per 32 weights: 5.0, 6.0, 8.5 bits per weight). A 3-bit grid costs as
    much as a 4-bit one there (no GGML type holds 3 bits in 32-blocks), so the options are 4, 5 and 8.
    """
    check_module(model)
    blocks = _check_blocks(model, blocks)
    if not isinstance(bits_options, (tuple, list)) or not bits_options:
        raise TypeError(f"bits_options must be a non-empty tuple of widths, got {bits_options!r}")
    options = sorted({check_bits(b) for b in bits_options})
    out = {}
    for block, names in blocks.items():
        weights = sum(model.get_submodule(name).weight.numel() for name in names)
        if any(model.get_submodule(name).in_features % 32 for name in names):
            raise ValueError(f"{block}: GGML blocks hold 32 weights; every in_features must be a multiple of 32")
        out[block] = {b: weights // 32 * BLOCK_BYTES[gguf_type(b)][1] for b in options}
    return out


def estimated_kl(sensitivity: float, measured_bits: int, bits: int) -> float:
    """KL at `bits` from KL at `measured_bits`: each extra bit quarters it. KL(b) = KL(m) * 4^(m - b)."""
    sensitivity = check_number(sensitivity, "sensitivity", 0.0)
    return sensitivity * 4.0 ** (check_bits(measured_bits, "measured_bits") - check_bits(bits))


def _kl_table(sensitivity: dict, costs: dict, measured_bits: int) -> dict[str, dict[int, float]]:
    """block -> {bits: KL} for every width in costs: measured where given, else by estimated_kl from one number."""
    table = {}
    for block, kl in sensitivity.items():
        widths = sorted(costs[block])
        if isinstance(kl, dict):
            if set(widths) - set(kl):
                raise ValueError(f"sensitivity[{block!r}] measures widths {sorted(kl)}, but costs offers {widths}: "
                                 "measure every width (block_sensitivity(..., bits=(4, 5, 8)))")
            values = {b: kl[b] for b in widths}
        else:
            values = {b: kl for b in widths}
        for b, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise ValueError(f"sensitivity[{block!r}] must be a finite KL >= 0 (or a dict of them), got {v!r}")
        table[block] = values if isinstance(kl, dict) else {b: estimated_kl(kl, measured_bits, b) for b in widths}
    return table


MAX_STEPS = 100_000  # the budget's resolution in allocate_bits' table


def allocate_bits(sensitivity: dict, costs: dict, budget: int, measured_bits: int = 4) -> dict[str, int]:
    """The widths per block that minimise the summed KL within `budget` bytes (a multiple-choice knapsack).

        min over b_l in costs[l]  sum_l KL_l(b_l)   s.t.   sum_l bytes_l(b_l) <= budget
    sensitivity: block -> {bits: KL} measured at every width in costs (block_sensitivity with a tuple of bits),
        or block -> one KL at `measured_bits`, extended by estimated_kl (each bit quarters it);
    costs: block -> {bits: bytes} (block_bytes).
    Solved exactly by dynamic programming over the bytes above the smallest plan, in steps of their greatest
    common divisor; if that makes more than MAX_STEPS steps, each block's extra bytes are rounded up to a coarser
    step (the plan still fits, and may leave less than one step per block unused). Ties go to fewer bits.
    Shapes: {block: KL or {bits: KL}}, {block: {bits: bytes}}, int -> {block: bits}.
    """
    if not isinstance(sensitivity, dict) or not isinstance(costs, dict) or set(sensitivity) != set(costs) \
            or not costs:
        raise ValueError("sensitivity and costs must be non-empty dicts over the same blocks")
    check_positive_int(budget, "budget")
    check_bits(measured_bits, "measured_bits")
    for block, c in costs.items():
        if not isinstance(c, dict) or not c or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                                    for v in c.values()):
            raise ValueError(f"costs[{block!r}] must be a non-empty dict bits -> bytes (ints >= 0), got {c!r}")
        for b in c:
            check_bits(b, f"a width in costs[{block!r}]")
    table = _kl_table(sensitivity, costs, measured_bits)
    names = list(costs)
    base = {block: min(costs[block].values()) for block in names}
    used = sum(base.values())
    if used > budget:
        raise ValueError(f"the budget of {budget:,} bytes is below the smallest choice ({used:,} bytes, every block "
                         f"at its fewest bytes); raise it")
    slack = budget - used
    extras = {block: {b: c - base[block] for b, c in costs[block].items()} for block in names}
    step = math.gcd(*(e for ex in extras.values() for e in ex.values()), slack) or 1
    if slack // step > MAX_STEPS:
        step = -(-slack // MAX_STEPS)
    steps = slack // step
    # best[s] = the least KL of the blocks so far with at most s steps of extra bytes
    best = torch.zeros(steps + 1, dtype=torch.float64)
    choices = []
    for block in names:
        options = sorted(costs[block], key=lambda b: (costs[block][b], b))
        new = torch.full((steps + 1,), float("inf"), dtype=torch.float64)
        pick = torch.zeros(steps + 1, dtype=torch.long)
        for index, b in enumerate(options):
            k = -(-extras[block][b] // step)
            if k > steps:
                continue
            candidate = torch.full((steps + 1,), float("inf"), dtype=torch.float64)
            candidate[k:] = best[:steps + 1 - k] + table[block][b]
            better = candidate < new
            new = torch.where(better, candidate, new)
            pick = torch.where(better, torch.tensor(index), pick)
        best = new
        choices.append((block, options, pick))
    plan, s = {}, steps
    for block, options, pick in reversed(choices):
        b = options[int(pick[s])]
        plan[block] = b
        s -= -(-extras[block][b] // step)
    return {block: plan[block] for block in names}


def quantize_mixed(model: nn.Module, plan: dict, method: str = "gptq", group_size: int = 64, calibration=None,
                   blocks: dict | None = None, **options) -> list:
    """Quantize each block of `plan` (block -> bits) to its width with `method`, in place, in the model's order.

    One quantize_model call per run of consecutive blocks at the same width, first block first: a sequential
    method (GPTQ) then sees each block's inputs through the blocks before it as they will ship, exactly as one
    uniform pass would. Blocks of one decoder block at several widths (per-Linear blocks) get one call per width,
    each calibrated on the decoder block's inputs with its other layers still float, then all swapped in at once:
    every layer sees what a uniform pass would show it, whatever its neighbours' widths. (That holds for methods
    that round each Linear on its own inputs, such as GPTQ; a method with a `prepare` step, such as AWQ, runs such
    blocks one run after the other.) Each call captures its inputs again from the start, so a plan that changes
    width often costs several uniform passes. Widths of 6-8 bits are symmetric (so that export_gguf writes them as
    Q8_0), fewer asymmetric (Q4_1, Q5_1). Returns the QuantizeReports in the order of the calls. Linears in no
    block of the plan (a tied lm_head, blocks left out of it) stay float.
    """
    check_module(model)
    blocks = _check_blocks(model, blocks)
    if not isinstance(plan, dict) or not plan or set(plan) - set(blocks):
        raise ValueError(f"plan must map blocks of the model to bits; unknown: {sorted(set(plan) - set(blocks))[:3]}")
    for block, b in plan.items():
        check_bits(b, f"plan[{block!r}]")
    qmethod = get_method(method)
    if qmethod.needs_calibration and calibration is None:
        raise ValueError(f"method {method!r} needs calibration data: pass calibration=[batch, ...] (token ids)")
    if calibration is not None:
        calibration = check_batches(calibration, model=model)  # used by every call
    together = qmethod.needs_calibration and _per_layer(qmethod)
    linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
    steps: list[tuple[int | None, list[str]]] = []  # (bits, a run of blocks) or (None, one parent's mixed blocks)
    previous = None  # the width of the run before, None if it cannot be extended
    for group in _parents(blocks, plan):
        widths = {plan[block] for block in group}
        if together and len(widths) > 1:
            steps.append((None, group))
            previous = None
            continue
        for block in group:
            if plan[block] == previous:
                steps[-1][1].append(block)
            else:
                steps.append((plan[block], [block]))
            previous = plan[block]
    reports = []
    for b, run in steps:
        if b is not None:
            names = [name for block in run for name in blocks[block]]
            reports.append(_quantize_only(model, names, b, group_size, method, calibration, linears, options))
            continue
        new = {}
        for width in sorted({plan[block] for block in run}):
            names = [name for block in run if plan[block] == width for name in blocks[block]]
            old = {name: model.get_submodule(name) for name in names}
            reports.append(_quantize_only(model, names, width, group_size, method, calibration, linears, options))
            new.update({name: replace_module(model, name, old[name]) for name in names})  # float until all are done
        for name, layer in new.items():
            replace_module(model, name, layer)
    return reports


def _parents(blocks: dict, plan: dict) -> list[list[str]]:
    """The blocks of `plan` in the model's order, consecutive ones under one parent (block_prefix) grouped.

    A block outside the plan ends a group, and so does one whose layers span several parents (a group alone).
    """
    groups: list[list[str]] = []
    last = None
    for block in blocks:
        parent = _parent(blocks[block])
        if block not in plan:
            last = None
        elif parent is not None and parent == last:
            groups[-1].append(block)
        else:
            groups.append([block])
            last = parent
    return groups
