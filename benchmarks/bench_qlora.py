"""QLoRA on SmolLM2-135M on a CPU: s/step, the 3-seed check of the adaptation target, a rank sweep, the memory table.

    python benchmarks/bench_qlora.py                     # 3 seeds, 20 steps of 64 tokens, r=8, lr 1e-3
    python benchmarks/bench_qlora.py --sweep             # also the final loss at r = 1..32 (notebook 10's widget)
    python benchmarks/bench_qlora.py --steps 40 --seq-len 128 --threads 2

1. The fine-tuning memory table (qlearn.methods.finetune_memory) for a 7B Llama-shaped model and SmolLM2,
   next to the QLoRA paper's 65B figures.
2. NF4 (double quantization) on every decoder Linear; perplexity of the held-out plant cards (the last 10 of
   course_text("adaptation")) and of the prose eval text, before and after LoRA (r=8, alpha=16, all *_proj)
   for each seed. The target: after fine-tuning the card perplexity is below the NF4 model's by a margin beyond
   the spread over seeds. Seconds per training step (forward + backward + AdamW) are printed; on a shared
   machine trust the best seed.
3. --sweep: the final training loss (mean of the last 5 steps) at each rank, seed 0, for the widget.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from qlearn.core.metrics import perplexity
from qlearn.data.llm import course_text, load_llm
from qlearn.methods.finetune_memory import RECIPES, decoder_linear_shapes, finetune_bytes, lora_params
from qlearn.methods.lora import add_lora, count_params
from qlearn.methods.lora_train import train_lora
from qlearn.methods.nf4_linear import replace_linears_nf4


def held_out_prose() -> str:
    """The held-out prose notebook 10 scores: the first 4 paragraphs of the course's eval text."""
    return "\n\n".join(course_text("eval").split("\n\n")[:4])


def memory_table() -> None:
    for name, shapes, extra in (("7B (Llama shapes)", decoder_linear_shapes(4096, 11008, 32), 2 * 32000 * 4096 + 65 * 4096),
                                ("SmolLM2-135M", decoder_linear_shapes(576, 1536, 30, kv_dim=192), 49152 * 576 + 61 * 576)):
        n_lin = sum(o * i for o, i in shapes)
        n, n_ad = n_lin + extra, lora_params(shapes, 8)
        print(f"{name}: {n:,} parameters, LoRA r=8 {n_ad:,} ({100 * n_ad / n:.2f} %)")
        for recipe in RECIPES:
            parts = finetune_bytes(n, n_lin, n_ad, recipe)
            print(f"  {recipe:23s} {parts['total'] / 1e9:9.3f} GB (base {parts['base'] / 1e9:.3f} GB)")
    print("paper (QLoRA abstract): 65B full 16-bit fine-tuning >780 GB; ours "
          f"{finetune_bytes(65 * 10**9, 64 * 10**9, 1, 'full 16-bit')['total'] / 1e9:.0f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweep", action="store_true", help="final loss at r = 1, 2, 4, 8, 16, 32 (seed 0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memory_table()

    model, tokenizer = load_llm(progress=False)
    cards = course_text("adaptation").splitlines()
    train_text, adapt_test, prose = "\n".join(cards[:30]), "\n".join(cards[30:]), held_out_prose()
    t0 = time.perf_counter()
    replace_linears_nf4(model, double_quant=True)
    print(f"NF4 conversion: {time.perf_counter() - t0:.1f} s", flush=True)
    before = perplexity(model, tokenizer, adapt_test, progress=False)
    prose_before = perplexity(model, tokenizer, prose, progress=False)
    print(f"NF4 before: cards {before:.2f}, prose {prose_before:.2f}  ({count_params(model):,} parameters)")

    if args.sweep:
        finals = {}
        for r in (1, 2, 4, 8, 16, 32):
            torch.manual_seed(0)
            trial, _ = add_lora(copy.deepcopy(model), r=r, alpha=2 * r, targets=("*_proj",))
            losses = train_lora(trial, tokenizer, train_text, steps=args.steps, seq_len=args.seq_len, lr=args.lr,
                                seed=0, progress=False)
            finals[r] = round(statistics.mean(losses[-5:]), 3)
            print(f"r={r}: final loss (mean of last 5) {finals[r]}", flush=True)
        print("RANK_SWEEP_LOSSES =", finals)

    after, per_step = [], []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        trial, report = add_lora(copy.deepcopy(model), r=8, alpha=16, targets=("*_proj",))
        t0 = time.perf_counter()
        losses = train_lora(trial, tokenizer, train_text, steps=args.steps, seq_len=args.seq_len, lr=args.lr,
                            seed=seed, progress=False)
        per_step.append((time.perf_counter() - t0) / args.steps)
        after.append(perplexity(trial, tokenizer, adapt_test, progress=False))
        prose_after = perplexity(trial, tokenizer, prose, progress=False)
        print(f"seed {seed}: {per_step[-1]:.2f} s/step, loss {losses[0]:.2f} -> {losses[-1]:.2f}, cards "
              f"{after[-1]:.2f}, prose {prose_after:.2f}; trained share {100 * report.trainable_share:.2f} %", flush=True)
    spread = max(after) - min(after)
    print(f"cards perplexity: NF4 {before:.2f} -> NF4 + LoRA {statistics.mean(after):.2f} (min {min(after):.2f}, "
          f"max {max(after):.2f}); margin {before - max(after):.2f} vs seed spread {spread:.2f}: "
          f"{'target reached' if before - max(after) > 3 * spread else 'target NOT reached'}")
    print(f"best s/step {min(per_step):.2f} ({args.seq_len} tokens, {args.threads} threads)")


if __name__ == "__main__":
    main()
