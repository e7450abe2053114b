"""SmolLM2-135M perplexity with every weight method at 4, 3 and 2 bits, in the shape of GPTQ's Table 3.

    python benchmarks/bench_smollm2_methods.py                       # 4/3/2 bits, g64 (4, 3) and g32 (2)
    python benchmarks/bench_smollm2_methods.py --bits 3 --methods rtn gptq awq
    python benchmarks/bench_smollm2_methods.py --tokens 2048 --threads 2
    python benchmarks/bench_smollm2_methods.py --bits 3 2 --methods rtn gptq gptq-mse   # GPTQ on both grids

The real model-level path: `quantize_model(model, method=..., bits, PerGroup(g), calibration=batches)` on a
fresh copy of the float model for every row, every Linear but the tied lm_head replaced. GPTQ is sequential
(each block calibrates on the outputs of the blocks already quantized) with act_order=True, on the min-max
grid ("gptq") and on the shrunk grid of lowest weight error ("gptq-mse", grid="mse"); AWQ folds its
scales into the norms before it. Calibration: `--tokens` tokens of course_text("generated") (text SmolLM2
wrote itself) in sequences of `--seq`; RTN is asymmetric (the grid GPTQ and AWQ build on). Perplexity is on
the first `--eval-windows` windows of course_text("eval"), which no method sees. Bits per weight are the
replaced layers' stored bytes (codes, scales, zero points, AWQ's kept input scales; not biases) * 8 / weights.
Prints the ratio of each method's perplexity increase over FP to RTN's at the same setting (the issue's
targets: <= 0.5 at 3 bits g64; at 2 bits g32 the best method below 10 % of RTN's perplexity), and the
seconds each quantize_model call took (target for GPTQ: under 3 minutes).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import qlearn.methods  # noqa: F401  registers gptq, awq, hqq, nf4
from qlearn.core.granularity import PerGroup
from qlearn.core.metrics import perplexity
from qlearn.data.llm import course_text, load_llm
from qlearn.inference.quantize_model import quantize_model

GROUPS = {4: 64, 3: 64, 2: 32}
METHODS = ("rtn", "nf4", "hqq", "gptq", "gptq-mse", "awq")
OPTIONS = {"rtn": {"symmetric": False}, "gptq": {"act_order": True}, "gptq-mse": {"act_order": True, "grid": "mse"}}


def bits_per_weight(report) -> float:
    """8 * stored bytes of the replaced layers (biases excluded) / their weights."""
    stored = weights = 0
    for layer in report.layers.values():
        tensors = {n: t for n, t in list(layer.named_parameters()) + list(layer.named_buffers()) if n != "bias"}
        stored += sum(t.numel() * t.element_size() for t in tensors.values())
        weights += layer.in_features * layer.out_features
    return 8 * stored / weights


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--tokens", type=int, default=4096, help="calibration tokens of course_text('generated')")
    parser.add_argument("--seq", type=int, default=256, help="calibration sequence length")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_llm(progress=False)
    ids = tokenizer(course_text("eval"))["input_ids"][:args.window * args.eval_windows + 1]
    text = tokenizer.decode(ids)
    cal = tokenizer(course_text("generated"), return_tensors="pt")["input_ids"][0, :args.tokens]
    batches = [chunk[None] for chunk in cal.split(args.seq) if chunk.numel() == args.seq]  # (1, seq) each

    fp = perplexity(model, tokenizer, text, window=args.window, progress=False)
    print(f"SmolLM2-135M, {len(ids) - 1} eval tokens, {sum(b.numel() for b in batches)} calibration tokens "
          f"(generated); FP perplexity {fp:.2f}")
    print(f"{'method':8s} {'bits':>4s} {'group':>5s} {'ppl':>10s} {'bits/w':>7s} {'(ppl-FP)/(RTN-FP)':>18s} "
          f"{'ppl/RTN':>8s} {'quantize s':>10s}")
    for bits in args.bits:
        group = GROUPS.get(bits, 64)
        rtn_ppl = None
        for method in args.methods:
            if method == "nf4" and bits != 4:
                continue
            q = copy.deepcopy(model)
            t0 = time.perf_counter()
            report = quantize_model(q, method=method.split("-")[0], bits=bits, granularity=PerGroup(group),
                                    calibration=batches, **OPTIONS.get(method, {}))
            seconds = time.perf_counter() - t0
            ppl = perplexity(q, tokenizer, text, window=args.window, progress=False)
            del q
            if method == "rtn":
                rtn_ppl = ppl
            known = rtn_ppl not in (None, fp)
            ratio = f"{(ppl - fp) / (rtn_ppl - fp):18.3f}" if known else f"{'-':>18s}"
            share = f"{ppl / rtn_ppl:8.3f}" if known else f"{'-':>8s}"
            print(f"{method:8s} {bits:4d} {group:5d} {ppl:10.2f} {bits_per_weight(report):7.3f} {ratio} {share} "
                  f"{seconds:10.1f}", flush=True)


if __name__ == "__main__":
    main()
