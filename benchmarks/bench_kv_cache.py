"""SmolLM2-135M-Instruct with a quantized KV cache: perplexity, KL and top-1 agreement against the float cache, bytes.

    python benchmarks/bench_kv_cache.py                      # 1024 tokens in chunks of 32, one thread
    python benchmarks/bench_kv_cache.py --tokens 512 --chunk 64 --threads 2

The course's eval text, then its calibration text (no cache here calibrates on anything), is cut to `--tokens`
tokens and fed through each cache in chunks of `--chunk` tokens, so every token attends to the quantized history
of the chunks before it (and, as in KIVI, to its own chunk and the float residual window in float). All caches run
in lockstep, chunk by chunk, against a float `DynamicCache` fed the same chunks (`qlearn.methods.kv_eval.score_caches`):

    PPL      exp(mean NLL of the next token)              over tokens 1 .. N - 1
    KL       mean over positions of KL(p_float || p_cache) in nats
    top-1    share of positions whose argmax token is the float cache's

qlearn's QuantizedKVCache: FP8 / int8 / int4 / int2, keys per channel (KIVI) or per token, values per token,
group 32, residual window 32 or none, and keys-only / values-only at 2 bits. Next to it, transformers' own
QuantizedCache with the quanto and HQQ backends (both run on a CPU here; a failure would be printed with its
error). transformers' layers quantize the first chunk whole and, once the float window fills, re-quantize the
whole history with it, so with chunks as long as the window they keep no float window: qlearn's R0 rows match
them. Bytes at 2k and 8k tokens come from `kv_cache_bytes` (float16 residual, as served); the bytes measured
at the end of the text are checked against it (float32 residual: the model's dtype).
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from qlearn.data import llm
from qlearn.methods.kv_cache import QuantizedKVCache, kv_cache_bytes
from qlearn.methods.kv_eval import hf_quantized_cache, score_caches

KIVI = {"key_granularity": "channel", "value_granularity": "token"}
PER_TOKEN = {"key_granularity": "token", "value_granularity": "token"}


def qlearn_configs():
    """(label, QuantizedKVCache kwargs) of every qlearn row."""
    rows = [("float (bits=None)", {"bits": None})]
    for keys, axes in (("K/channel", KIVI), ("K/token", PER_TOKEN)):
        for bits in ("fp8_e4m3", 8, 4, 2):
            rows.append((f"{bits} {keys} R32", {"bits": bits, **axes, "residual_length": 32}))
        for bits in (4, 2):
            rows.append((f"{bits} {keys} R0", {"bits": bits, **axes, "residual_length": 0}))
    rows.append(("4 K/channel g64 R64", {"bits": 4, **KIVI, "group_size": 64, "residual_length": 64}))
    rows.append(("keys only 2 K/channel R32", {"bits": (2, None), **KIVI}))
    rows.append(("values only 2 V/token R32", {"bits": (None, 2), **KIVI}))
    return rows


HF_CONFIGS = [  # transformers' QuantizedCache (qlearn.methods.kv_eval.hf_quantized_cache names the axes)
    ("quanto 4 K/channel", {"backend": "quanto", "bits": 4}),
    ("quanto 4 K/token", {"backend": "quanto", "bits": 4, "key_granularity": "token"}),
    ("quanto 2 K/channel", {"backend": "quanto", "bits": 2}),
    ("hqq 4 K/token", {"backend": "hqq", "bits": 4, "key_granularity": "token"}),
]


def factories(config) -> dict:
    """label -> a function building a fresh cache, for kv_eval.score_caches (qlearn's rows, then transformers')."""
    out = {label: functools.partial(QuantizedKVCache, **kw) for label, kw in qlearn_configs()}
    for label, kw in HF_CONFIGS:
        out[label] = functools.partial(hf_quantized_cache, config, group_size=32, residual_length=32, **kw)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="one thread is fastest on a busy shared machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start, cpu = time.perf_counter(), time.process_time()
    model, tokenizer = llm.load_llm(progress=False)
    text = llm.course_text("eval") + "\n\n" + llm.course_text("calibration")
    ids = tokenizer(text, return_tensors="pt")["input_ids"][:, :args.tokens]  # (1, N)
    scores = score_caches(model, ids, factories(model.config), chunk=args.chunk)
    ref = scores["float"]
    settings = dict(qlearn_configs())
    float16 = {t: kv_cache_bytes(model.config, t, bits=None) for t in (2048, 8192)}

    print(f"SmolLM2-135M, {ids.shape[1]} tokens in chunks of {args.chunk}, group 32; float cache PPL "
          f"{ref.ppl:.3f}")
    print(f"float16 cache: {float16[2048] / 2**20:.1f} MiB at 2k tokens, {float16[8192] / 2**20:.1f} MiB at 8k\n")
    print(f"{'cache':<27} {'PPL':>8} {'dPPL':>7} {'KL':>9} {'top-1':>7} {'MiB@2k':>7} {'MiB@8k':>7} {'x fp16':>7}")
    results = {}
    for label, s in scores.items():
        if label == "float":
            continue
        if s.error:
            print(f"{label:<27} did not run: {s.error[:200]}")
            continue
        results[label] = (s.ppl, s.kl)
        size = ""
        if label in settings:
            kw = settings[label]
            b = {t: kv_cache_bytes(model.config, t, **kw) for t in (2048, 8192)}
            measured = kv_cache_bytes(model.config, ids.shape[1], **kw, dtype=torch.float32)
            assert s.nbytes == measured, (label, s.nbytes, measured)
            size = f"{b[2048] / 2**20:>7.2f} {b[8192] / 2**20:>7.2f} {b[8192] / float16[8192]:>7.3f}"
        print(f"{label:<27} {s.ppl:>8.3f} {100 * (s.ppl / ref.ppl - 1):>6.2f}% {s.kl:>9.5f} {s.top1:>7.3f} {size}")
    nbytes_match = all(scores[label].nbytes == kv_cache_bytes(model.config, ids.shape[1], **kw, dtype=torch.float32)
                       for label, kw in settings.items() if not scores[label].error)

    print("\nKIVI-4 bytes at 8k tokens against float16 by group size (keys per channel, values per token; R = g;"
          " g <= head_dim 64 for per-token values):")
    for g in (16, 32, 64):
        b = kv_cache_bytes(model.config, 8192, bits=4, group_size=g, residual_length=g)
        print(f"  g{g:<4} {b / 2**20:7.2f} MiB = {b / float16[8192]:.3f}x  (codes 0.250x + metadata {4 / g / 2:.3f}x)")

    base = ref.ppl
    checks = [
        ("2-bit: KL(K/token) / KL(K/channel) >= 2", results["2 K/token R32"][1] / results["2 K/channel R32"][1], 2.0),
        ("4-bit KIVI R32: PPL within 5 % of float", results["4 K/channel R32"][0] / base - 1, 0.05),
        ("2-bit KIVI R32: PPL within 25 % of float", results["2 K/channel R32"][0] / base - 1, 0.25),
        ("2-bit KIVI R0 (no window): PPL vs float", results["2 K/channel R0"][0] / base - 1, None),
        (".nbytes == kv_cache_bytes for every qlearn cache (1 = yes)", float(nbytes_match), 1.0),
        ("4-bit KIVI g32: bytes at 8k <= 0.3x float16",
         kv_cache_bytes(model.config, 8192, bits=4) / float16[8192], 0.3),
        ("4-bit KIVI g64 R64: bytes at 8k <= 0.3x float16",
         kv_cache_bytes(model.config, 8192, bits=4, group_size=64, residual_length=64) / float16[8192], 0.3),
        ("4-bit KIVI g64 R64: PPL within 5 % of float", results["4 K/channel g64 R64"][0] / base - 1, 0.05),
    ]
    if "quanto 4 K/channel" in results:  # transformers re-quantizes everything once its window fills: qlearn's R0
        checks.append(("4-bit: |PPL(qlearn R32) / PPL(quanto) - 1| <= 10 %",
                       abs(results["4 K/channel R32"][0] / results["quanto 4 K/channel"][0] - 1), 0.10))
        checks.append(("4-bit: |PPL(qlearn R0) / PPL(quanto) - 1| <= 10 %",
                       abs(results["4 K/channel R0"][0] / results["quanto 4 K/channel"][0] - 1), 0.10))
    print("\nTargets:")
    for name, value, bound in checks:
        at_least = ">=" in name or "==" in name
        verdict = "" if bound is None else ("met" if (value >= bound if at_least else value <= bound) else "MISSED")
        print(f"  {name:<52} {value:8.4f}  {verdict}")
    print("\nWhy g32 misses 0.3x: each group of 32 codes keeps a float16 scale and a float16 minimum, 32 bits for 32 "
          "values,\n  one extra bit per value: (4 + 1) / 16 = 0.3125x before the float window; the 32-token window "
          "of values in float16\n  adds the rest. g64 halves the metadata (4.5 / 16 = 0.281x) and meets the target. "
          "The target stays 0.3x.")
    print(f"\n{time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} s of CPU, "
          f"{args.threads} thread(s) (on a shared machine the CPU seconds are the idle machine's wall time)")


if __name__ == "__main__":
    main()
