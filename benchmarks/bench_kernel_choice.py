"""What choosing the kernel costs per call: QuantLinear with its kept choice against one that chooses every call.

    python benchmarks/bench_kernel_choice.py                  # 576 x 576 (SmolLM2's width), batch 1, 1 thread
    python benchmarks/bench_kernel_choice.py --size 4096 --batch 64

A QuantLinear asks `kernels.choose` once per (device, dtype, needs-grad) of its input and keeps the answer.
The contender "chooses every call" is the same layer with that memory switched off (what every forward did
before): the difference between the two is the per-call cost of the choice (checking the layer's attributes and
each fast path's conditions). At a small width and batch 1 a layer's matmul takes tens of microseconds, so a few
microseconds of Python show. The contenders run interleaved, round after round, each round timing `--calls`
calls with torch.utils.benchmark; each reports its best round, in microseconds per call.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn
from torch.utils.benchmark import Timer

from qlearn import PerChannel, PerGroup, QuantLinear
from qlearn.inference import kernels


class ChoosesEveryCall(QuantLinear):
    """A QuantLinear that asks kernels.choose on every forward instead of keeping its choice."""

    def _plan(self, x: torch.Tensor) -> kernels.Plan:
        return kernels.choose(self, x)


LAYERS = {"int8": dict(bits=8, granularity=PerChannel(0)),
          "int4 g64": dict(bits=4, granularity=PerGroup(64), symmetric=False),
          "W8A8": dict(bits=8, granularity=PerChannel(0), activations=8)}


def contenders(linear: nn.Linear) -> dict[str, nn.Module]:
    """name -> module computing the same layer: float32, and each quantized layer kept / chosen every call."""
    out = {"fp32 nn.Linear": linear}
    for name, kwargs in LAYERS.items():
        kept = QuantLinear.from_linear(linear, **kwargs)
        every = ChoosesEveryCall(linear.in_features, linear.out_features, **kwargs)
        every.load_state_dict(kept.state_dict())
        out[f"{name} kept"], out[f"{name} every call"] = kept, every
    return out


@torch.no_grad()
def best_us(modules: dict[str, nn.Module], x: torch.Tensor, rounds: int, calls: int) -> dict[str, float]:
    """Best round's microseconds per call of module(x), the contenders interleaved round after round."""
    timers = {name: Timer("m(x)", globals={"m": m, "x": x}) for name, m in modules.items()}
    for t in timers.values():  # warm up: kernel layouts, first-call allocations
        t.timeit(10)
    best = {name: float("inf") for name in modules}
    for _ in range(rounds):
        for name, t in timers.items():
            best[name] = min(best[name], t.timeit(calls).mean * 1e6)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=576, help="in = out features (default 576, a multiple of 64)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=20, help="calls per round (few: fewer rounds get interrupted)")
    args = parser.parse_args()
    if args.size < 64 or args.size % 64:
        parser.error("--size must be a multiple of 64 (the int4 contender's group size)")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    linear = nn.Linear(args.size, args.size)
    x = torch.randn(args.batch, args.size)
    modules = contenders(linear)
    us = best_us(modules, x, args.rounds, args.calls)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, layer {args.size} x {args.size}, "
          f"batch {args.batch}: best of {args.rounds} rounds of {args.calls} calls")
    print(f"{'':22s} {'path':>10s} {'us/call':>9s} {'x fp32':>8s} {'choice costs':>13s}")
    for name, t in us.items():
        m = modules[name]
        path = kernels.select_name(m, x) if isinstance(m, QuantLinear) else "-"
        every = name.replace(" kept", " every call")
        saved = f"{us[every] - t:10.2f} us" if name.endswith(" kept") else ""
        print(f"{name:22s} {path:>10s} {t:9.2f} {t / us['fp32 nn.Linear']:8.3f} {saved:>13s}")


if __name__ == "__main__":
    main()
