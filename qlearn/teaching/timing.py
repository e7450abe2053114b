"""Fair timings on a shared machine: run the contenders interleaved and keep each one's median.

    for each round:  for each contender:  time one call
    result[name] = median over rounds (milliseconds)

A busy machine slows every contender in the same round alike, so the ratios between
medians are much steadier than the milliseconds themselves: report ratios. On a machine
shared with other jobs, `statistic="min"` (the best round) estimates the uncontended time.
"""

from __future__ import annotations

import statistics
import time

import torch
from tqdm.auto import tqdm

__all__ = ["median_ms"]


@torch.no_grad()
def median_ms(modules: dict, x: torch.Tensor, rounds: int = 10, budget_s: float = 3.0,
              progress: bool = False, statistic: str = "median") -> dict[str, float]:
    """Median (or with statistic="min", best) milliseconds of `module(x)` for each name -> module.

    A contender stops after `budget_s` seconds in total.

    Shapes: x (..., in) is passed unchanged to every module.
    """
    if not isinstance(modules, dict) or not modules or not all(callable(m) for m in modules.values()):
        raise TypeError("modules must be a non-empty dict of name -> callable module")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    if not isinstance(budget_s, (int, float)) or budget_s <= 0:
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    if statistic not in ("median", "min"):
        raise ValueError(f"statistic must be 'median' or 'min', got {statistic!r}")
    for m in modules.values():  # warm up: kernel caches, first-call allocations
        m(x)
    times = {name: [] for name in modules}
    for _ in tqdm(range(rounds), desc="timing", disable=not progress):
        for name, m in modules.items():
            if times[name] and sum(times[name]) > budget_s:
                continue
            start = time.perf_counter()
            m(x)
            times[name].append(time.perf_counter() - start)
    reduce = statistics.median if statistic == "median" else min
    return {name: 1e3 * reduce(t) for name, t in times.items()}
