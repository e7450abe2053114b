"""Why the reference path (dequantize, then matmul) is 20-50x slower than float32 at batch 1, not the 2.25x that
counting the weight bytes once predicts: each step of `dequantize` writes a whole new float copy of the weight.

    python benchmarks/bench_reference_path.py            # 4096 x 4096, one thread
    python benchmarks/bench_reference_path.py --size 2048

Prints each step of QuantLinear.reference_forward as a multiple of one float32 matmul, the MiB each step reads
and writes, and the same dequantize written into preallocated buffers (no fresh allocation, hence no page faults).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from qlearn import QuantLinear
from qlearn.teaching.timing import median_ms


class _Step(nn.Module):
    """A callable for median_ms: fn(x) with a name."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def main(size: int, rounds: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    linear = nn.Linear(size, size)
    layer = QuantLinear.from_linear(linear, bits=8, kernel="reference")
    W_q, qp = layer.codes(), layer.qparams()
    scale, zp = qp.scale, qp.zero_point  # (out, 1) each
    W32 = W_q.to(torch.int32)
    Wf = W32.float()
    buf_i, buf_f = torch.empty_like(W32), torch.empty_like(Wf)
    mib = size * size / 2 ** 20

    def preallocated(x):
        torch.sub(W_q, zp, out=buf_i)       # int8 -> int32 into a reused buffer
        buf_f.copy_(buf_i)                  # int32 -> float32 into a reused buffer
        buf_f.mul_(scale)
        return F.linear(x, buf_f, linear.bias)

    steps = {  # name -> (callable, MiB read + written)
        "float32 F.linear": (lambda x: F.linear(x, linear.weight, linear.bias), 4 * mib),
        "reference forward (all steps)": (layer, None),
        "  codes range check (min, max)": (lambda x: (W_q.min(), W_q.max()), 2 * mib),
        "  int8 -> int32 (new tensor)": (lambda x: W_q.to(torch.int32), 5 * mib),
        "  minus zero point (new tensor)": (lambda x: W32 - zp, 8 * mib),
        "  int32 -> float32 (new tensor)": (lambda x: W32.float(), 8 * mib),
        "  times scale (new tensor)": (lambda x: scale * Wf, 8 * mib),
        "  float32 F.linear on W_hat": (lambda x: F.linear(x, Wf, linear.bias), 4 * mib),
        "same dequantize, preallocated buffers": (preallocated, (5 + 8 + 8 + 4) * mib),
    }
    x = torch.randn(1, size)
    with torch.no_grad():
        ms = median_ms({name: _Step(fn) if not isinstance(fn, nn.Module) else fn for name, (fn, _) in steps.items()},
                       x, rounds=rounds, budget_s=20.0, statistic="min")
    base = ms["float32 F.linear"]
    print(f"W {size} x {size}, batch 1, one thread: time as a multiple of one float32 F.linear "
          f"({4 * mib:.0f} MiB read)")
    for name, (_, traffic) in steps.items():
        moved = "" if traffic is None else f"{traffic:7.0f} MiB moved"
        print(f"{name:40s} {ms[name] / base:7.2f} x   {moved}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    main(args.size, args.rounds)
