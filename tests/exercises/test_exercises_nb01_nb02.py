"""The check functions of notebooks 01 and 02 accept right answers and reject wrong ones."""

import torch
from torch import nn

import qlearn
from qlearn.exercises import nb01, nb02


def test_nb01_checks():
    model = nn.Sequential(nn.Linear(3, 4))
    assert nb01.check_memory_bytes(model, 2 * 16)
    assert not nb01.check_memory_bytes(model, 4 * 16)
    assert not nb01.check_memory_bytes(model, None)
    assert nb01.check_smallest_safe_dtype(100_000.0, "bfloat16")
    assert nb01.check_smallest_safe_dtype(100.0, torch.float8_e4m3fn)
    assert not nb01.check_smallest_safe_dtype(100_000.0, "float16")
    assert not nb01.check_smallest_safe_dtype(100_000.0, "float32")
    assert nb01.check_machine_epsilon("bfloat16", 2.0 ** -7)
    assert not nb01.check_machine_epsilon("bfloat16", 2.0 ** -10)
    assert "Not yet" in repr(nb01.check_machine_epsilon("float16", "x"))


def test_nb02_checks():
    x = torch.tensor([-0.8, 0.1, 2.4, 3.3])
    qp = qlearn.choose_qparams(x)
    assert nb02.check_scale_and_zero_point(x, float(qp.scale), int(qp.zero_point))
    assert not nb02.check_scale_and_zero_point(x, float(qp.scale), int(qp.zero_point) + 1)
    assert not nb02.check_scale_and_zero_point(x, 2 * float(qp.scale), int(qp.zero_point))
    codes = torch.tensor([-8, -3, 0, 7], dtype=torch.int8)
    assert nb02.check_dequantized(codes, 0.25, -3, torch.tensor([-1.25, 0.0, 0.75, 2.5]))
    assert not nb02.check_dequantized(codes, 0.25, -3, 0.25 * codes.float() - 3)
    W = torch.randn(64, 64)
    sqnr = {b: qlearn.core.metrics.sqnr_db(W, qlearn.dequantize(qlearn.quantize(W, p := qlearn.choose_qparams(W, bits=b)), p))
            for b in range(2, 9)}
    best = min(b for b, v in sqnr.items() if v >= 30)
    assert nb02.check_min_bits(W, 30.0, best)
    assert not nb02.check_min_bits(W, 30.0, best - 1)
    assert not nb02.check_min_bits(W, 30.0, best + 1)
