"""median_ms: one median per contender, every contender called, bad input rejected."""

import pytest
import torch
from torch import nn

from qlearn.teaching.timing import median_ms


def test_every_contender_is_timed():
    calls = {"a": 0, "b": 0}

    def counter(name):
        def f(x):
            calls[name] += 1
            return x
        return f

    ms = median_ms({"a": counter("a"), "b": counter("b")}, torch.zeros(2), rounds=3)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert calls == {"a": 4, "b": 4}  # one warm-up call and three timed rounds


def test_budget_stops_a_slow_contender_early():
    import time

    calls = []
    ms = median_ms({"slow": lambda x: (calls.append(1), time.sleep(0.02))}, torch.zeros(1), rounds=50, budget_s=0.05)
    assert len(calls) < 10 and ms["slow"] >= 20


@pytest.mark.parametrize("kwargs,err", [({"modules": {}}, TypeError), ({"rounds": 0}, ValueError),
                                        ({"budget_s": -1}, ValueError), ({"x": [1.0]}, TypeError),
                                        ({"statistic": "mean"}, ValueError)],
                         ids=["no-modules", "rounds-0", "negative-budget", "x-list", "statistic-mean"])
def test_bad_input(kwargs, err):
    args = {"modules": {"id": nn.Identity()}, "x": torch.zeros(1), **kwargs}
    with pytest.raises(err):
        median_ms(**args)


def test_min_is_never_above_median():
    modules = {"a": nn.Linear(64, 64), "b": nn.Identity()}
    x = torch.randn(4, 64)
    torch.manual_seed(0)
    best, median = median_ms(modules, x, rounds=5, statistic="min"), median_ms(modules, x, rounds=5)
    assert set(best) == set(median) == {"a", "b"}
    assert all(v > 0 for v in best.values())
