"""quantize_model on MiniLM with every weight method (sequential GPTQ, folded AWQ), against the issue-14 targets.

    PYTHONPATH=. python benchmarks/bench_quantize_model.py               # cosine table + GPTQ time
    PYTHONPATH=. python benchmarks/bench_quantize_model.py --tries       # also the GPTQ / AWQ variants tried
    PYTHONPATH=. python benchmarks/bench_quantize_model.py --threads 2   # default 1 thread

Mean cosine of sentence embeddings (models.embed) to fp32 on models.SENTENCES; calibration on 48 other
sentences (CALIBRATION of bench_weight_methods plus EXTRA below), batches of 8 run as model(**batch).
Every nn.Linear of MiniLM is quantized (37 layers, the pooler included), QuantLinear on the reference kernel.
optimum-quanto's qint4 / qint2 (its defaults, group 128 for int4/int2) sit in the same table.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from bench_weight_methods import CALIBRATION, COSINE_TARGETS, MINILM_CONFIGS, verdict

from qlearn import PerGroup, quantize_model
from qlearn.data import models

EXTRA = (
    "The bakery on the corner sells bread until noon.", "A storm knocked out power across the valley.",
    "He practised the piano every evening after dinner.", "The committee postponed the vote until spring.",
    "Volunteers cleaned plastic from the beach on Sunday.", "The spacecraft sent back images of a distant moon.",
    "My grandmother keeps chickens behind her house.", "The new law limits the noise from night flights.",
    "A thief stole three bicycles from the station.", "The chess champion resigned after forty moves.",
    "Our flight was delayed by fog at the airport.", "The painter mixed blue and yellow to make green.",
    "Farmers expect a good harvest after the warm summer.", "The server crashed when traffic spiked at midnight.",
    "She translated the novel from Italian into English.", "The river flooded the fields near the town.",
    "A young fox crossed the road in front of our car.", "The company recalled a batch of faulty chargers.",
    "Students debated whether homework should be banned.", "The hikers reached the summit just before sunset.",
    "The hospital opened a new wing for children.", "Wind turbines turned slowly on the distant hills.",
    "The chef tasted the soup and added more salt.", "The museum guard found a lost wallet under a bench.",
)
METHODS = ("rtn", "nf4", "hqq", "gptq", "awq")


def calibration_batches(tokenizer, size=8):
    sentences = list(CALIBRATION) + list(EXTRA)
    return [dict(tokenizer(sentences[i:i + size], padding=True, return_tensors="pt"))
            for i in range(0, len(sentences), size)]


def cosine(model, tokenizer, reference) -> float:
    emb = models.embed(model, tokenizer, models.SENTENCES)
    return float((emb * reference).sum(-1).mean())


def ours(model, method, bits, group, batches, **options):
    q = copy.deepcopy(model)
    kwargs = {"calibration": batches} if method in ("gptq", "awq") else {}
    if method in ("rtn", "gptq", "awq"):
        kwargs.update(kernel="reference", symmetric=False)
    quantize_model(q, bits=bits, granularity=PerGroup(group), method=method, **kwargs, **options)
    return q


def quanto(model, bits):
    from optimum.quanto import freeze, qint2, qint4, quantize

    q = copy.deepcopy(model)
    quantize(q, weights={4: qint4, 2: qint2}[bits])
    freeze(q)
    return q


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--tries", action="store_true", help="also the GPTQ / AWQ variants (act_order, damp, ...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = models.load_model()
    batches = calibration_batches(tokenizer)
    tokens = sum(int(b["input_ids"].numel()) for b in batches)
    reference = models.embed(model, tokenizer, models.SENTENCES)

    t0 = time.perf_counter()
    report = quantize_model(copy.deepcopy(model), bits=4, granularity=PerGroup(128), method="gptq",
                            calibration=batches, symmetric=False)
    seconds = time.perf_counter() - t0
    print(f"MiniLM: sequential GPTQ 4 bits g128, all {len(report.replaced)} Linear layers, {tokens} calibration "
          f"tokens, {args.threads} thread(s): {seconds:.1f} s   target < 30 s  {verdict(seconds < 30)}")

    print("MiniLM mean cosine to fp32 (held-out sentences), quantize_model(method=...)")
    print(f"  {'bits, group':<12}" + "".join(f"{m:>8}" for m in METHODS) + f"{'quanto':>8}   target (best of ours)")
    for bits, group in MINILM_CONFIGS:
        row = {m: cosine(ours(model, m, bits, group, batches), tokenizer, reference)
               for m in METHODS if m != "nf4" or bits == 4}
        q = cosine(quanto(model, bits), tokenizer, reference) if bits in (4, 2) else None
        cells = "".join(f"{row[m]:8.3f}" if m in row else f"{'-':>8}" for m in METHODS)
        cells += f"{q:8.3f}" if q is not None else f"{'-':>8}"
        best = max(row, key=row.get)
        target = COSINE_TARGETS[(bits, group)]
        print(f"  {f'{bits}, g{group}':<12}{cells}   {target} ({best} {row[best]:.3f}, "
              f"{row[best] / target:.3f}x target: {verdict(row[best] >= target)})")

    if args.tries:
        print("Variants tried (mean cosine):")
        variants = [("gptq", {"act_order": True}), ("gptq", {"damp": 0.1}), ("gptq", {"act_order": True, "damp": 0.1}),
                    ("awq", {"clip": False}), ("awq", {"pairs": []})]
        for bits, group in MINILM_CONFIGS:
            cells = []
            for method, options in variants:
                c = cosine(ours(model, method, bits, group, batches, **options), tokenizer, reference)
                cells.append(f"{method} {options}: {c:.3f}")
            print(f"  {bits}, g{group}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
