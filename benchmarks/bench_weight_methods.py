"""The weight methods (qlearn.methods: rtn, nf4, hqq, gptq, awq) on the synthetic targets of issue 14, and on MiniLM.

    python benchmarks/bench_weight_methods.py                # synthetic ratios, GPTQ time on MiniLM, MiniLM cosines
    python benchmarks/bench_weight_methods.py --no-cosine    # skip the (slowest) MiniLM cosine table
    python benchmarks/bench_weight_methods.py --threads 2      # default 1 thread
    python benchmarks/bench_weight_methods.py --calibration paragraphs   # MiniLM calibrated on whole paragraphs

Every synthetic score is a ratio to round-to-nearest (RTN) on the same weight, measured on held-out tokens.
"Output error" is reported two ways: the ratio of mean squared errors mean((X W^T - X W_hat^T)^2), the quantity
GPTQ and AWQ minimise, and the ratio of Frobenius norms (its square root). The targets are checked on the
MSE ratio. The MiniLM cosines run quantize_model(method=...) on a copy of the model (GPTQ sequential with
act_order, on the min-max grid and on the shrunk "mse" grid; AWQ folding its scales; calibration: the
sentences of course_text("calibration") and course_text("generated"), about 7,000 tokens) and compare
sentence embeddings with float32.

Calibrating on sentences rather than whole paragraphs matters for MiniLM: the evaluation embeds short
sentences, each with its own [CLS] and [SEP], and a paragraph of 100+ tokens holds one of each, so the
layers' inputs at those positions are barely seen by the calibration (--calibration paragraphs shows it).
"""

from __future__ import annotations

import argparse
import copy
import re
import time

import torch

from qlearn.core.granularity import PerGroup
from qlearn.data import models, tensors
from qlearn.data.llm import course_text
from qlearn.inference.quantize_model import quantize_model
from qlearn.methods import awq, gptq, hqq, nf4, rtn

MINILM_CONFIGS = ((4, 128), (3, 128), (2, 64))
COSINE_TARGETS = {(4, 128): 0.99, (3, 128): 0.97, (2, 64): 0.80}


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def output_mse(X, W, W_hat) -> float:
    return float((X @ (W - W_hat).T).square().mean())


def ratio_row(label, X_test, W, W_hat, R_hat, target):
    mse = output_mse(X_test, W, W_hat) / output_mse(X_test, W, R_hat)
    print(f"  {label:<28} MSE ratio {mse:6.3f}   norm ratio {mse ** 0.5:6.3f}   target <= {target}  "
          f"{verdict(mse <= target)}")


def synthetic():
    g = torch.Generator().manual_seed(0)
    print("GPTQ / RTN output error, W 256x512, AR(1) inputs rho 0.9, 2048 calibration + 1024 held-out tokens")
    W = torch.randn(256, 512, generator=g) * 0.05
    X = tensors.correlated_inputs(3072, 512, rho=0.9, seed=1)
    for bits in (4, 3):
        W_hat = gptq.quantize_weight(W, X[:2048], bits=bits, group_size=128).dequantize()
        R_hat = rtn.quantize_weight(W, bits=bits, group_size=128).dequantize()
        ratio_row(f"{bits} bits, g128", X[2048:], W, W_hat, R_hat, 0.35)

    print("AWQ / RTN output error, W 256x1024, 10 of 1024 input channels scaled 50x")
    W = torch.randn(256, 1024, generator=g) * 0.05
    X = torch.randn(3072, 1024, generator=g)
    X[:, torch.randperm(1024, generator=g)[:10]] *= 50
    for bits in (4, 3):
        qw = awq.quantize_weight(W, X[:2048], bits=bits, group_size=128)
        R_hat = rtn.quantize_weight(W, bits=bits, group_size=128).dequantize()
        ratio_row(f"{bits} bits, g128 (alpha {qw.alpha:.2f})", X[2048:], W, qw.dequantize(), R_hat, 0.5)

    print("HQQ / RTN weight error, W 256x512 Student-t (3 dof)")
    torch.manual_seed(0)
    W = torch.distributions.StudentT(3.0).sample((256, 512)) * 0.02
    for bits, group in ((4, 64), (3, 64), (2, 64), (4, None)):
        H_hat = hqq.quantize_weight(W, bits=bits, group_size=group).dequantize()
        R_hat = rtn.quantize_weight(W, bits=bits, group_size=group).dequantize()
        l1 = float((H_hat - W).abs().mean() / (R_hat - W).abs().mean())
        mse = float((H_hat - W).square().mean() / (R_hat - W).square().mean())
        print(f"  {bits} bits, g{group}:  L1 ratio {l1:6.3f} (target <= 1: {verdict(l1 <= 1)})   "
              f"MSE ratio {mse:6.3f} (target < 1: {verdict(mse < 1)})")

    print("NF4 / absmax int4 weight MSE, W 256x512 Gaussian, block 64 (symmetric absmax int4 = RTN symmetric g64)")
    W = torch.randn(256, 512, generator=g)
    for double_quant in (False, True):
        qw = nf4.quantize_weight(W, group_size=64, double_quant=double_quant)
        int4 = rtn.quantize_weight(W, bits=4, group_size=64, symmetric=True)
        mse = float((qw.dequantize() - W).square().mean() / (int4.dequantize() - W).square().mean())
        print(f"  double_quant={double_quant!s:<5}  MSE ratio {mse:6.3f} (target < 1: {verdict(mse < 1)})   "
              f"bits/weight {qw.bits_per_weight:.3f} vs int4 {int4.bits_per_weight:.3f}")


def minilm_batches(tokenizer, unit: str = "sentences", max_length: int = 256) -> list[dict]:
    """Calibration batches for MiniLM: the sentences (or paragraphs) of course_text("calibration") and ("generated").

    Sentences: about 330 of 3+ words, 7,000 tokens; paragraphs: about 8,000 tokens. Both are several times the
    widest layer's 1536 inputs; padding is dropped by the capture (attention_mask). Disjoint from the
    evaluation sentences models.SENTENCES.
    """
    text = course_text("calibration") + "\n\n" + course_text("generated")
    if unit == "sentences":
        pieces, batch_size = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.split()) >= 3], 32
    else:
        pieces, batch_size = [p.strip() for p in text.split("\n\n") if p.strip()], 8
    return [dict(tokenizer(pieces[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")) for i in range(0, len(pieces), batch_size)]


METHODS = ("rtn", "nf4", "hqq", "gptq", "gptq-mse", "awq")


def quantized_copy(model, method, batches, bits, group):
    """A copy of `model` quantized by quantize_model (GPTQ sequential with act_order; RTN asymmetric)."""
    q = copy.deepcopy(model)
    options = {"rtn": {"symmetric": False}, "gptq": {"act_order": True},
               "gptq-mse": {"act_order": True, "grid": "mse"}}.get(method, {})
    quantize_model(q, method=method.split("-")[0], bits=bits, granularity=PerGroup(group), calibration=batches,
                   **options)
    return q


def minilm(cosine: bool, unit: str):
    model, tokenizer = models.load_model()
    batches = minilm_batches(tokenizer, unit)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    t0 = time.perf_counter()
    report = quantize_model(copy.deepcopy(model), method="gptq", bits=4, granularity=PerGroup(128),
                            calibration=batches, act_order=True)
    seconds = time.perf_counter() - t0
    print(f"MiniLM: GPTQ 4 bits g128 (quantize_model, sequential, act_order) on all {len(report.replaced)} "
          f"Linear layers, {tokens} calibration tokens ({unit})")
    print(f"  {seconds:5.1f} s   target < 30 s  {verdict(seconds < 30)}")
    if not cosine:
        return
    reference = models.embed(model, tokenizer, models.SENTENCES)
    print("MiniLM mean cosine to fp32 (held-out sentences), every Linear replaced by quantize_model(method=...)")
    print(f"  {'bits, group':<12}" + "".join(f"{m:>9}" for m in METHODS) + "   target (best)")
    for bits, group in MINILM_CONFIGS:
        row = {}
        for method in METHODS:
            if method == "nf4" and bits != 4:
                continue
            emb = models.embed(quantized_copy(model, method, batches, bits, group), tokenizer, models.SENTENCES)
            row[method] = float((emb * reference).sum(-1).mean())
        best = max(row.values())
        cells = "".join(f"{row[m]:9.3f}" if m in row else f"{'-':>9}" for m in METHODS)
        target = COSINE_TARGETS[(bits, group)]
        print(f"  {f'{bits}, g{group}':<12}{cells}   {target} ({max(row, key=row.get)} {best:.3f}: "
              f"{verdict(best >= target)})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a busy shared machine more threads spin and wait)")
    parser.add_argument("--no-cosine", action="store_true", help="skip the MiniLM cosine table")
    parser.add_argument("--no-minilm", action="store_true", help="synthetic targets only")
    parser.add_argument("--calibration", choices=("sentences", "paragraphs"), default="sentences",
                        help="MiniLM's calibration text cut into sentences (default) or whole paragraphs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    synthetic()
    if not args.no_minilm:
        minilm(cosine=not args.no_cosine, unit=args.calibration)


if __name__ == "__main__":
    main()
