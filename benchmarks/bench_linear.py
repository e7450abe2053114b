"""Time qlearn's QuantLinear against float32 nn.Linear and optimum-quanto; print ratio tables.

    python benchmarks/bench_linear.py                 # 4096 x 4096, batch 1 and 64, 2 threads
    python benchmarks/bench_linear.py --size 1024 --rounds 5 --threads 4
    python benchmarks/bench_linear.py --size 576 --group-size 64 --batches 1 --rounds 200   # SmolLM2's width

The contenders run interleaved, round after round; each reports its median time and its best
round ("min"). A machine busy with other work slows all of them, but not alike (a kernel that
splits its work over 2 threads waits for the slower one), so on a shared machine the best-round
ratio is the better estimate; trust ratios more than milliseconds, and rerun on a quiet machine
before quoting numbers.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

from qlearn import PerChannel, PerGroup, QuantLinear, model_size_bytes
from qlearn.inference import kernels
from qlearn.teaching.timing import median_ms

# the targets on a 2-core laptop: time or bytes as a fraction of float32
TARGETS = {("int4 g128", 1): 0.25, ("int8", 1): 0.6, ("W8A8", 64): 0.35}
BYTE_TARGETS = {"int8": 0.26, "int4 g128": 0.15}


def contenders(linear: nn.Linear, with_naive: bool, group_size: int = 128) -> dict[str, nn.Module]:
    """name -> module computing the same layer."""
    out = {
        "fp32 nn.Linear": linear,
        "int8": QuantLinear.from_linear(linear, bits=8, granularity=PerChannel(0)),
        f"int4 g{group_size}": QuantLinear.from_linear(linear, bits=4, granularity=PerGroup(group_size),
                                                       symmetric=False),
        "W8A8": QuantLinear.from_linear(linear, bits=8, granularity=PerChannel(0), activations=8),
        "W8A7": QuantLinear.from_linear(linear, bits=8, granularity=PerChannel(0), activations=7),
    }
    if with_naive:
        out["int8 reference"] = QuantLinear.from_linear(linear, bits=8, kernel="reference")
    try:
        import copy

        from optimum.quanto import freeze, qint4, qint8, quantize
        for name, qtype in (("quanto qint8", qint8), ("quanto qint4", qint4)):
            model = nn.Sequential(copy.deepcopy(linear))
            quantize(model, weights=qtype)
            freeze(model)
            out[name] = model
    except ImportError:  # optimum-quanto is a dependency, but keep the script useful without it
        pass
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096, help="in = out features (default 4096)")
    parser.add_argument("--group-size", type=int, default=128, choices=kernels.INT4_GROUP_SIZES,
                        help="group size of the int4 contender (default 128; 64 or 32 for SmolLM2's 576)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.size < args.group_size or args.size % args.group_size or args.size % 16:
        parser.error("--size must be a multiple of --group-size and of 16 (the int4 kernel's output tiles)")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    linear = nn.Linear(args.size, args.size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, layer {args.size} x {args.size}")

    for batch in args.batches:
        x = torch.randn(batch, args.size)
        modules = contenders(linear, with_naive=batch == 1, group_size=args.group_size)
        times = median_ms(modules, x, args.rounds, budget_s=3.0, statistic="min")
        ms = median_ms(modules, x, args.rounds, budget_s=3.0)
        fp32, best32 = ms["fp32 nn.Linear"], times["fp32 nn.Linear"]
        print(f"\nbatch {batch}: time ratio, lower is faster (fp32 here: median {fp32:.2f} ms, best {best32:.2f} ms)")
        print(f"{'':16s} {'path':>10s} {'ms':>8s} {'best ms':>8s} {'x fp32':>8s} {'best x fp32':>12s} {'x quanto':>9s}"
              f"  target (on best)")
        for name, t in ms.items():
            path = kernels.select_name(modules[name], x) if isinstance(modules[name], QuantLinear) else "-"
            quanto = {"int8": "quanto qint8", f"int4 g{args.group_size}": "quanto qint4"}.get(name)
            vs_quanto = f"{t / ms[quanto]:9.3f}" if quanto in ms else f"{'':9s}"
            best = times[name] / best32
            target = TARGETS.get((name, batch))
            verdict = "" if target is None else f"<= {target}: {'met' if best <= target else 'MISSED'}"
            print(f"{name:16s} {path:>10s} {t:8.4f} {times[name]:8.4f} {t / fp32:8.3f} {best:12.3f} {vs_quanto}  "
                  f"{verdict}")

    print("\nbytes (parameters and buffers) as a fraction of float32")
    fp32_bytes = model_size_bytes(linear)
    for name, m in contenders(linear, with_naive=False, group_size=args.group_size).items():
        if isinstance(m, QuantLinear):
            ratio = model_size_bytes(m) / fp32_bytes
            target = BYTE_TARGETS.get(name)
            verdict = "" if target is None else f"<= {target}: {'met' if ratio <= target else 'MISSED'}"
            print(f"{name:16s} {ratio:8.3f}  {verdict}")


if __name__ == "__main__":
    main()
