"""Notebook 09's checks accept the right answer in any numeric form and reject wrong ones."""

import numpy as np
import pytest
import torch

from qlearn.exercises import nb09


def _x():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 96, generator=g)
    X[:, [7, 50]] *= 25.0
    return X


def _w():
    return 0.05 * torch.randn(32, 96, generator=torch.Generator().manual_seed(1))


FORMS = [int, float, np.int64, np.float32, torch.tensor, lambda v: torch.tensor([v])]
FORM_IDS = ["int", "float", "numpy-int", "numpy-float32", "tensor-0d", "tensor-1"]


@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_starved_channels(form):
    X = _x()
    scale = X.abs().max() / 127
    n = int((X.abs().amax(dim=0) < 8 * scale).sum())
    assert 0 < n < 96
    assert nb09.check_starved_channels(X, form(n))
    assert not nb09.check_starved_channels(X, form(n + 1))
    assert not nb09.check_starved_channels(X, None)


@pytest.mark.parametrize("form", [float, np.float64, np.float32, torch.tensor], ids=["float", "numpy", "numpy-float32",
                                                                                     "tensor"])
def test_float_share(form):
    X = _x()
    k = int((X.abs() >= 3.0).any(dim=0).sum())
    assert nb09.check_float_share(X, 3.0, form(k / 96))
    wrong = nb09.check_float_share(X, 3.0, 100 * k / 96)
    assert not wrong and "percentage" in wrong.message
    assert not nb09.check_float_share(X, 3.0, form((k + 1) / 96))
    assert not nb09.check_float_share(X, 3.0, "a lot")


@pytest.mark.parametrize("form", [float, np.float32, torch.tensor], ids=["float", "numpy-float32", "tensor"])
def test_smoothed_max(form):
    X, W = _x(), _w()
    s = X.abs().amax(0) ** 0.5 / W.abs().amax(0) ** 0.5
    answer = float((X / s).abs().max())
    assert answer < float(X.abs().max())
    assert nb09.check_smoothed_max(X, W, form(answer))
    assert not nb09.check_smoothed_max(X, W, float(X.abs().max()))
    assert not nb09.check_smoothed_max(X, W, None)


def test_booleans_and_nan_are_not_numbers():
    X = _x()
    assert not nb09.check_starved_channels(X, True)
    assert not nb09.check_smoothed_max(X, _w(), float("nan"))
