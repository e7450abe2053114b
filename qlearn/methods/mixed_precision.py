"""Bits per layer under a memory budget: measure each block's sensitivity, then fill the budget greedily.

The idea behind EXL2's per-layer bit rates and Unsloth's "dynamic" quants, in its simplest form. Objective:

    min over b_1..b_L  sum_l KL_l(b_l)   subject to   sum_l bytes_l(b_l) <= budget

bytes_l(b) counts the block's weights as a GGUF file stores them (the file llama.cpp maps into memory).

KL_l(b) is the KL divergence of the model's next-token distribution when only block l is quantized to b bits
(the others stay float). Measured once at `bits` (RTN, the grid every method rounds onto) and extended to the
other widths by the rule that each extra bit halves the rounding error, so quarters its square:
KL_l(b) ~= KL_l(bits) * 4^(bits - b). The budget is filled greedily: start every block at the fewest bits, then
keep raising the block whose next width buys the most KL per byte, while the budget allows (a knapsack whose
costs are convex in the bits, where the greedy choice is close to the best).
Simplified: the blocks' errors are taken to add up (they interact a little), and sensitivity is measured with
RTN even when GPTQ or AWQ quantizes afterwards (they lower every block's error by a similar factor).
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.granularity import PerGroup
from ..core.validation import check_bits, check_bool, check_module, check_number, check_positive_int
from ..inference.quantize_model import quantize_model
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
    if blocks is None:
        return decoder_blocks(model)
    modules = dict(model.named_modules())
    if not isinstance(blocks, dict) or not blocks:
        raise TypeError("blocks must be None or a non-empty dict: block name -> list of Linear names")
    for block, names in blocks.items():
        bad = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
        if bad or not names:
            raise ValueError(f"blocks[{block!r}] must list nn.Linear layers of the model; not one: {bad[:3]}")
    return blocks


@torch.no_grad()
def block_sensitivity(model: nn.Module, tokenizer, text: str, bits: int = 4, group_size: int = 64,
                      blocks: dict | None = None, window: int = 128, progress: bool = False) -> dict[str, float]:
    """KL(p_float || p_block) in nats for each block: only that block's Linears rounded to `bits` (RTN).

        KL_l = 1/N * sum_t sum_v p(v | x_<=t) * (log p(v | x_<=t) - log p_l(v | x_<=t))
    The weights are swapped in place and put back (the model ends as it began). Same positions as
    metrics.kl_divergence with one window of the first `window` tokens of `text`.
    Shapes: text -> ids (1, w) -> logits (w, vocab) per block -> {block: float}.
    """
    check_module(model)
    check_bits(bits)
    check_positive_int(group_size, "group_size")
    check_positive_int(window, "window")
    check_bool(progress, "progress")
    blocks = _check_blocks(model, blocks)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :window]  # (1, w)
    ids = ids.to(next(model.parameters()).device)
    logp_ref = torch.log_softmax(model(ids).logits[0].double(), dim=-1)  # (w, vocab)
    out = {}
    for block, names in tqdm(blocks.items(), desc="sensitivity", disable=not progress):
        saved = {}
        for name in names:
            weight = model.get_submodule(name).weight
            saved[name] = weight.data
            weight.data = rtn_weight(weight.data, bits=bits, group_size=group_size).dequantize()
        try:
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)  # (w, vocab)
        finally:
            for name in names:
                model.get_submodule(name).weight.data = saved[name]
        out[block] = float((logp_ref.exp() * (logp_ref - logp)).sum(-1).mean())
    return out


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


def allocate_bits(sensitivity: dict, costs: dict, budget: int, measured_bits: int = 4) -> dict[str, int]:
    """Bits per block within `budget` bytes, greedily: always raise the block with the most KL saved per byte.

        start b_l = min bits; repeat: l* = argmax_l (KL_l(b_l) - KL_l(b_l')) / (bytes_l(b_l') - bytes_l(b_l))
        over the blocks whose next width b_l' still fits; stop when none fits.
    sensitivity: block -> KL at `measured_bits` (block_sensitivity); costs: block -> {bits: bytes} (block_bytes).
    """
    if not isinstance(sensitivity, dict) or not isinstance(costs, dict) or set(sensitivity) != set(costs) \
            or not costs:
        raise ValueError("sensitivity and costs must be non-empty dicts over the same blocks")
    check_positive_int(budget, "budget")
    check_bits(measured_bits)
    for block, kl in sensitivity.items():
        if not isinstance(kl, (int, float)) or not kl >= 0 or kl == float("inf"):
            raise ValueError(f"sensitivity[{block!r}] must be a finite KL >= 0, got {kl!r}")
    options = {block: sorted(c) for block, c in costs.items()}
    bits = {block: opts[0] for block, opts in options.items()}
    used = sum(costs[block][b] for block, b in bits.items())
    if used > budget:
        raise ValueError(f"the budget of {budget:,} bytes is below the smallest choice ({used:,} bytes, every block "
                         f"at its fewest bits); raise it")
    while True:
        best, best_gain = None, 0.0
        for block, b in bits.items():
            higher = [o for o in options[block] if o > b]
            if not higher:
                continue
            extra = costs[block][higher[0]] - costs[block][b]
            if used + extra > budget:
                continue
            saved = estimated_kl(sensitivity[block], measured_bits, b) - \
                estimated_kl(sensitivity[block], measured_bits, higher[0])
            gain = saved / max(extra, 1)
            if best is None or gain > best_gain:
                best, best_gain = block, gain
        if best is None:
            return bits
        nxt = [o for o in options[best] if o > bits[best]][0]
        used += costs[best][nxt] - costs[best][bits[best]]
        bits[best] = nxt


def quantize_mixed(model: nn.Module, plan: dict, method: str = "gptq", group_size: int = 64, calibration=None,
                   blocks: dict | None = None, **options) -> list:
    """quantize_model once per width in `plan` (block -> bits), each call on that width's blocks only, in place.

    Widths of 6-8 bits are symmetric (so that export_gguf writes them as Q8_0), fewer asymmetric (Q4_1, Q5_1).
    Returns the QuantizeReports, widest first. Linears in no block of the plan (a tied lm_head) stay float.
    """
    check_module(model)
    blocks = _check_blocks(model, blocks)
    if not isinstance(plan, dict) or not plan or set(plan) - set(blocks):
        raise ValueError(f"plan must map blocks of the model to bits; unknown: {sorted(set(plan) - set(blocks))[:3]}")
    in_blocks = {name for names in blocks.values() for name in names}
    loose = [name for name, m in model.named_modules() if type(m) is nn.Linear and name not in in_blocks]
    reports = []
    for b in sorted(set(plan.values()), reverse=True):
        check_bits(b)
        others = [block for block in blocks if plan.get(block) != b]
        reports.append(quantize_model(model, bits=b, granularity=PerGroup(group_size), method=method,
                                      calibration=calibration, exclude=others + loose, symmetric=b >= 6,
                                      **options))
    return reports
