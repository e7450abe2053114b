"""Issue 26's capstone target under GPTQ, per Linear layer: mixed widths beat uniform 5 bits at equal GGUF bytes.

    python benchmarks/bench_capstone_per_linear.py      # about 10 minutes on 2 quiet cores, 25 on busy ones

1. Table: for each decoder block and width (4, 5, 8), GPTQ g64 quantizes the whole block once (one input capture);
   then each of its Linears is swapped in alone and the KL to float measured on 128 calibration tokens.
2. allocate_bits on that measured table within the bytes of uniform 5 bits (Q5_1), per Linear.
3. quantize_mixed with GPTQ for the plan and for uniform 5 bits; KL on the first 256 eval tokens.
Seen (2026-12-03, busy machine): uniform 5 bits KL 0.0455, mixed per Linear 0.0306, both 79,626,240 bytes.
"""

from __future__ import annotations

import collections
import copy
import time

import torch

import qlearn.methods  # noqa: F401  registers gptq
from qlearn.core.granularity import PerGroup
from qlearn.core.metrics import kl_divergence
from qlearn.core.modules import replace_module
from qlearn.data.llm import course_text, load_llm
from qlearn.inference.quantize_model import quantize_model
from qlearn.methods import mixed_precision as mp

WIDTHS = (4, 5, 8)


@torch.no_grad()
def linear_table(model, calibration, ids) -> dict[str, dict[int, float]]:
    ref = torch.log_softmax(model(ids).logits[0].double(), -1)

    def kl_now() -> float:
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
        return float((ref.exp() * (ref - logp)).sum(-1).mean())

    blocks = mp.decoder_blocks(model)
    linears = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]  # every other one stays float
    table: dict[str, dict[int, float]] = {}
    for names in blocks.values():
        for b in WIDTHS:
            old = {n: model.get_submodule(n) for n in names}
            quantize_model(model, bits=b, granularity=PerGroup(64), method="gptq", calibration=calibration,
                           exclude=[n for n in linears if n not in names], symmetric=b >= 6)
            new = {n: model.get_submodule(n) for n in names}
            for n in names:
                replace_module(model, n, old[n])
            for n in names:
                replace_module(model, n, new[n])
                table.setdefault(n, {})[b] = kl_now()
                replace_module(model, n, old[n])
    return table


def main() -> None:
    torch.set_num_threads(2)
    model, tokenizer = load_llm(progress=False)
    eval_text = tokenizer.decode(tokenizer(course_text("eval"))["input_ids"][:257])
    ids = tokenizer(course_text("generated"), return_tensors="pt")["input_ids"][0, :2048]
    calibration = [chunk[None] for chunk in ids.split(256)]
    start = time.perf_counter()
    table = linear_table(model, calibration, ids[:128][None])
    print(f"table of {len(table)} Linears x {WIDTHS} in {time.perf_counter() - start:.0f} s")
    per_linear = {n: [n] for n in table}
    costs = mp.block_bytes(model, WIDTHS, blocks=per_linear)
    budget = sum(c[5] for c in costs.values())
    plan = mp.allocate_bits(table, costs, budget)
    print(f"plan: {dict(sorted(collections.Counter(plan.values()).items()))} Linears per width")
    kls = {}
    for name, choice in (("uniform 5-bit", {n: 5 for n in table}), ("mixed", plan)):
        start = time.perf_counter()
        q = copy.deepcopy(model)
        mp.quantize_mixed(q, choice, method="gptq", group_size=64, calibration=calibration, blocks=per_linear)
        kls[name] = kl_divergence(model, q, tokenizer, eval_text, window=256, progress=False)
        used = sum(costs[n][choice[n]] for n in table)
        print(f"  {name:14s} {used:,} linear bytes (budget {budget:,}): KL {kls[name]:.4f} "
              f"({time.perf_counter() - start:.0f} s)")
        del q
    print(f"mixed beats uniform at equal bytes on KL: {kls['mixed']:.4f} vs {kls['uniform 5-bit']:.4f}  "
          f"[{'MET' if kls['mixed'] < kls['uniform 5-bit'] else 'NOT MET'}]")


if __name__ == "__main__":
    main()
