"""Helpers that other modules build on still reject wrong argument types with a TypeError / ValueError."""

import pytest
import torch
from torch import nn

from qlearn import PerChannel
from qlearn.data import digits
from qlearn.inference import kernels, serialize
from qlearn.plots.qat import accuracy_vs_bits_plot
from qlearn.training import lsq, observers

CASES = [
    ("digits.accuracy", lambda: digits.accuracy("model", "data")),
    ("digits.accuracy data", lambda: digits.accuracy(nn.Linear(64, 10), (torch.zeros(1, 64), torch.zeros(1)))),
    ("observers.block_rows", lambda: observers.block_rows([1.0, 2.0], PerChannel(0))),
    ("observers.block_rows granularity", lambda: observers.block_rows(torch.randn(4, 4), "channel")),
    ("lsq.lsq_init_scale", lambda: lsq.lsq_init_scale(torch.randn(4, 4), 12, PerChannel(0))),
    ("lsq.lsq_fake_quantize", lambda: lsq.lsq_fake_quantize("W", torch.ones(4, 1), 4, PerChannel(0))),
    ("kernels.select_name", lambda: kernels.select_name(nn.Linear(4, 4), torch.randn(1, 4))),
    ("serialize.layer_config", lambda: serialize.layer_config(nn.Linear(4, 4))),
    ("accuracy_vs_bits_plot", lambda: accuracy_vs_bits_plot([8, 4], "curves", 97.0)),
]


@pytest.mark.parametrize("call", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_bad_input_raises_clearly(call):
    with pytest.raises((TypeError, ValueError)):
        call()
