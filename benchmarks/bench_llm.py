"""SmolLM2-135M-Instruct, quantized: load time, perplexity per weight format, tokens/s of greedy generation.

    python benchmarks/bench_llm.py                    # 32 new tokens, 3 rounds, 2 threads
    python benchmarks/bench_llm.py --tokens 64 --rounds 5 --threads 4

1. Load time: `load_llm()` into an empty cache folder (dequantize the GGUF file, write the cache),
   then again from that cache. The user's own cache is not touched.
2. Perplexity on the shipped eval text (`course_text("eval")`, window 512) for the dequantized fp32
   reference and qlearn's round-to-nearest at several bits and group sizes (asymmetric min-max,
   as the GPTQ/AWQ papers' RTN baseline), plus optimum-quanto's qint8, with the bytes of each model.
3. Tokens/s of greedy generation (a fixed number of new tokens) for fp32, qlearn int8 (per channel),
   qlearn int4 (g64) and optimum-quanto qint8, interleaved round after round; the ratio to fp32.
   On a shared machine the best round estimates the uncontended speed; trust ratios, not tokens/s.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import tempfile
import time
import warnings

import torch

from qlearn import PerChannel, PerGroup, model_size_bytes, quantize_model
from qlearn.core import metrics
from qlearn.data import llm

PROMPT = "Explain in two sentences why the sky is blue."
PPL_CONFIGS = [("RTN w8 g64", 8, 64), ("RTN w4 g32", 4, 32), ("RTN w4 g64", 4, 64), ("RTN w3 g64", 3, 64),
               ("RTN w2 g32", 2, 32)]


def quanto_qint8(model):
    """The source notes' recipe: optimum-quanto int8 weights, frozen (integer weights stored)."""
    from optimum.quanto import freeze, qint8, quantize

    quantize(model, weights=qint8)
    freeze(model)
    return model


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = [i for i in (text.find(". "), text.find("? "), text.find("! ")) if i >= 0]
    return text[:min(cut) + 1] if cut else text


def load_times(cache: str):
    """Seconds of a cold load (empty cache folder `cache`) and of a cached one, and the loaded model."""
    os.environ[llm.CACHE_ENV] = cache
    start = time.perf_counter()
    llm.load_llm()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    model, tokenizer = llm.load_llm()
    cached = time.perf_counter() - start
    return cold, cached, model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per generation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    cache = tempfile.mkdtemp(prefix="qlearn-bench-cache-")
    try:
        cold, cached, fp32, tokenizer = load_times(cache)
        run(fp32, tokenizer, cold, cached, args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def run(fp32, tokenizer, cold: float, cached: float, args) -> None:
    print(f"load_llm(): cold (empty cache) {cold:.1f} s, cached {cached:.1f} s  ({cold / cached:.0f}x)")

    text = llm.course_text("eval")
    n_tokens = len(tokenizer(text)["input_ids"])
    models = {"fp32 (dequantized Q4_1)": fp32}
    for name, bits, group in PPL_CONFIGS:
        models[name] = copy.deepcopy(fp32)
        quantize_model(models[name], bits=bits, granularity=PerGroup(group), symmetric=False)
    models["qlearn int8 (per channel)"] = copy.deepcopy(fp32)
    report = quantize_model(models["qlearn int8 (per channel)"], bits=8, granularity=PerChannel())
    models["optimum-quanto qint8"] = quanto_qint8(copy.deepcopy(fp32))
    print(f"\nperplexity on course_text('eval') ({n_tokens} tokens, window 512); "
          f"lm_head: {report.skipped.get('lm_head', 'quantized')}")
    print(f"{'weights':28s} {'MiB':>7s} {'x fp32':>7s} {'perplexity':>11s}")
    base_bytes = model_size_bytes(fp32)
    for name, model in models.items():
        size = model_size_bytes(model)
        ppl = metrics.perplexity(model, tokenizer, text, progress=False)
        print(f"{name:28s} {size / 2**20:7.1f} {size / base_bytes:7.3f} {ppl:11.2f}")

    contenders = {"fp32": fp32, "qlearn int8": models["qlearn int8 (per channel)"],
                  "qlearn int4 g64": models["RTN w4 g64"], "optimum-quanto qint8": models["optimum-quanto qint8"]}
    times = {name: [] for name in contenders}
    texts = {}
    for name, model in contenders.items():  # warm-up: kernel layouts, first-call allocations
        texts[name] = llm.generate(model, tokenizer, PROMPT, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    for _ in range(args.rounds):
        for name, model in contenders.items():
            start = time.perf_counter()
            llm.generate(model, tokenizer, PROMPT, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
            times[name].append(time.perf_counter() - start)
    print(f"\ngreedy generation, {args.tokens} new tokens, {args.threads} threads, {args.rounds} rounds")
    print(f"{'weights':22s} {'tok/s best':>10s} {'x fp32':>7s} {'tok/s median':>12s} {'x fp32':>7s}  first sentence")
    best0, med0 = min(times["fp32"]), statistics.median(times["fp32"])
    for name, t in times.items():
        best, med = min(t), statistics.median(t)
        print(f"{name:22s} {args.tokens / best:10.1f} {best0 / best:7.2f} {args.tokens / med:12.1f} "
              f"{med0 / med:7.2f}  {first_sentence(texts[name])!r}")


if __name__ == "__main__":
    main()
