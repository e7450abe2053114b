"""Notebook 11's checks: the right answer in its numeric forms passes, the known mistakes fail with their hint."""

import math

import numpy as np
import torch

from qlearn.exercises import nb11

BLOCK = torch.randn(32, generator=torch.Generator().manual_seed(0)) * 0.03
SPIKY = torch.cat([torch.full((1,), 40.0), torch.randn(575, generator=torch.Generator().manual_seed(1))])


def test_mx_exponent_answers():
    k = math.floor(math.log2(float(BLOCK.abs().max()))) - 2
    assert nb11.mx_exponent(BLOCK) == k
    for form in (k, float(k), np.int64(k), torch.tensor(k)):
        assert nb11.check_mx_exponent(BLOCK, form).ok
    for wrong, hint in ((k + 2, "emax"), (k + 127, "code"), (k + 1, "round down")):
        feedback = nb11.check_mx_exponent(BLOCK, wrong)
        assert not feedback.ok and hint in feedback.message
    assert not nb11.check_mx_exponent(BLOCK, None).ok


def test_kurtosis_answers():
    c = SPIKY.double() - SPIKY.double().mean()
    value = float((c ** 4).mean() / (c ** 2).mean() ** 2)
    assert value > 100 and math.isclose(nb11.kurtosis(SPIKY), value, rel_tol=1e-12)
    for form in (value, float(f"{value:.4g}"), np.float32(value), torch.tensor(value)):
        assert nb11.check_kurtosis(SPIKY, form).ok, form
    feedback = nb11.check_kurtosis(SPIKY, value - 3)
    assert not feedback.ok and "excess" in feedback.message
    assert not nb11.check_kurtosis(SPIKY, 3.0).ok
