"""Notebook 14's checks accept every correct form and name the known mistakes."""

import numpy as np
import torch

from qlearn.exercises import nb14
from qlearn.methods.ggml_quants import dequantize_blocks, quantize_blocks

BLOCK = quantize_blocks(torch.randn(32, generator=torch.Generator().manual_seed(0)), "Q4_1")  # (20,) uint8


def test_decoded_block_accepts_tensor_array_and_list():
    good = dequantize_blocks(BLOCK, "Q4_1", (32,))
    for form in (good, good.numpy(), good.tolist(), good.double()):
        assert nb14.check_decoded_q4_1(BLOCK, form)


def test_decoded_block_names_the_mistakes():
    q = torch.cat([BLOCK[4:].long() & 15, BLOCK[4:].long() >> 4]).float()
    d, m = (float(BLOCK[i:i + 2].view(torch.float16)) for i in (0, 2))
    assert "min" in str(nb14.check_decoded_q4_1(BLOCK, d * q))
    assert "order" in str(nb14.check_decoded_q4_1(BLOCK, d * q.reshape(2, 16).T.reshape(32) + m))
    assert not nb14.check_decoded_q4_1(BLOCK, torch.zeros(32))
    assert not nb14.check_decoded_q4_1(BLOCK, None)


def test_uniform_estimate():
    s = {"a": 0.2, "b": 0.04, "c": 0.01}
    assert nb14.check_uniform_estimate(s, 0.0625)
    assert nb14.check_uniform_estimate(s, np.float32(0.0625))
    assert "quarters" in str(nb14.check_uniform_estimate(s, 0.25))
    assert "wrong way" in str(nb14.check_uniform_estimate(s, 1.0))
    assert not nb14.check_uniform_estimate(s, 0.125)
