"""The weight methods (qlearn.methods: rtn, nf4, hqq, gptq, awq) on the synthetic targets of issue 14, and on MiniLM.

    python benchmarks/bench_weight_methods.py                # synthetic ratios, GPTQ time on MiniLM, MiniLM cosines
    python benchmarks/bench_weight_methods.py --no-cosine    # skip the (slowest) MiniLM cosine table
    python benchmarks/bench_weight_methods.py --threads 2      # default 1 thread

Every synthetic score is a ratio to round-to-nearest (RTN) on the same weight, measured on held-out tokens.
"Output error" is reported two ways: the ratio of mean squared errors mean((X W^T - X W_hat^T)^2), the quantity
GPTQ and AWQ minimise, and the ratio of Frobenius norms (its square root). The targets are checked on the
MSE ratio. The MiniLM cosines quantize every nn.Linear's weight independently (inputs collected once from the
float model, not sequentially as a model-level pass would) and compare sentence embeddings with float32.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from qlearn.training import calibrate
from qlearn.data import models, tensors
from qlearn.methods import awq, gptq, hqq, nf4, rtn
from qlearn.training.observers import Observer

# calibration text for MiniLM, disjoint from the evaluation sentences models.SENTENCES
CALIBRATION = (
    "The train to the airport leaves every twenty minutes.", "She planted tomatoes and basil in the garden.",
    "Researchers measured the temperature of the lake each morning.", "A small dog barked at the delivery van.",
    "The museum opens a new exhibition on ancient maps.", "He forgot his umbrella and got soaked in the rain.",
    "Electric cars need fewer repairs than petrol cars.", "The children built a sandcastle near the pier.",
    "Our team fixed the bug before the release.", "The orchestra rehearsed the symphony for hours.",
    "Fresh snow covered the mountain village overnight.", "Please send me the report by Friday afternoon.",
    "The recipe calls for two eggs and a cup of flour.", "A satellite photographed the storm from orbit.",
    "The library extended its opening hours during exams.", "Prices for coffee beans rose again this year.",
    "The referee stopped the match because of lightning.", "Neural networks learn patterns from examples.",
    "The old bridge was closed for safety inspections.", "Tourists queued outside the cathedral at dawn.",
    "My phone battery drains quickly in cold weather.", "The startup raised money to hire more engineers.",
    "Birds migrate south when the days get shorter.", "The doctor recommended more sleep and less sugar.",
)
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
        qw = nf4.quantize_weight(W, block_size=64, double_quant=double_quant)
        int4 = rtn.quantize_weight(W, bits=4, group_size=64, symmetric=True)
        mse = float((qw.dequantize() - W).square().mean() / (int4.dequantize() - W).square().mean())
        print(f"  double_quant={double_quant!s:<5}  MSE ratio {mse:6.3f} (target < 1: {verdict(mse < 1)})   "
              f"bits/weight {qw.bits_per_weight:.3f} vs int4 {int4.bits_per_weight:.3f}")


class InputCollector(Observer):
    """An observer that keeps every input it sees, flattened to (tokens, in)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def observe(self, x):
        self.seen.append(x.detach().float().reshape(-1, x.shape[-1]))
        self.batches += 1
        return self


def minilm_inputs(model, tokenizer, sentences) -> dict[str, torch.Tensor]:
    """Linear name -> X (tokens, in) it receives for `sentences` (one sentence per batch, so no padding)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    batches = [tokenizer(s, return_tensors="pt")["input_ids"] for s in sentences]
    observers = calibrate.calibrate(model, names, batches, InputCollector())
    return {n: torch.cat(o.seen) for n, o in observers.items()}


def quantized_copy(model, method, inputs, bits, group):
    """A copy of `model` whose every Linear weight is replaced by `method`'s dequantize()."""
    q = copy.deepcopy(model)
    for name, m in q.named_modules():
        if isinstance(m, nn.Linear):
            W, X = m.weight.detach(), inputs[name]
            if method == "nf4":
                qw = nf4.quantize_weight(W, block_size=group)
            else:
                qw = {"rtn": rtn, "hqq": hqq, "gptq": gptq, "awq": awq}[method].quantize_weight(
                    W, X, bits=bits, group_size=group)
            m.weight.data = qw.dequantize()
    return q


def minilm(cosine: bool):
    model, tokenizer = models.load_model()
    t0 = time.perf_counter()
    inputs = minilm_inputs(model, tokenizer, CALIBRATION)
    t1 = time.perf_counter()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for name, m in layers.items():
        gptq.quantize_weight(m.weight.detach(), inputs[name], bits=4, group_size=128)
    t2 = time.perf_counter()
    tokens = next(iter(inputs.values())).shape[0]
    print(f"MiniLM: GPTQ 4 bits g128 on all {len(layers)} Linear layers, {tokens} calibration tokens")
    print(f"  collect inputs {t1 - t0:5.1f} s + quantize {t2 - t1:5.1f} s = {t2 - t0:5.1f} s   target < 30 s  "
          f"{verdict(t2 - t0 < 30)}")
    if not cosine:
        return
    reference = models.embed(model, tokenizer, models.SENTENCES)
    print("MiniLM mean cosine to fp32 (held-out sentences), every Linear weight replaced by dequantize()")
    print(f"  {'bits, group':<12}" + "".join(f"{m:>8}" for m in ("rtn", "nf4", "hqq", "gptq", "awq")) + "   target (best)")
    for bits, group in MINILM_CONFIGS:
        row = {}
        for method in ("rtn", "nf4", "hqq", "gptq", "awq"):
            if method == "nf4" and bits != 4:
                continue
            emb = models.embed(quantized_copy(model, method, inputs, bits, group), tokenizer, models.SENTENCES)
            row[method] = float((emb * reference).sum(-1).mean())
        best = max(row.values())
        cells = "".join(f"{row[m]:8.3f}" if m in row else f"{'-':>8}" for m in ("rtn", "nf4", "hqq", "gptq", "awq"))
        target = COSINE_TARGETS[(bits, group)]
        print(f"  {f'{bits}, g{group}':<12}{cells}   {target} ({max(row, key=row.get)} {best:.3f}: "
              f"{verdict(best >= target)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a busy shared machine more threads spin and wait)")
    parser.add_argument("--no-cosine", action="store_true", help="skip the MiniLM cosine table")
    parser.add_argument("--no-minilm", action="store_true", help="synthetic targets only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    synthetic()
    if not args.no_minilm:
        minilm(cosine=not args.no_cosine)


if __name__ == "__main__":
    main()
