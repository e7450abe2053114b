"""core.validation: each checker returns what it was given when it is allowed, and says what is allowed otherwise."""

import math

import pytest
import torch
from torch import nn

from qlearn.core import validation as v


@pytest.mark.parametrize("value,error", [(1, None), (8, None), (0, ValueError), (1.0, ValueError), (True, ValueError),
                                         (None, ValueError), ("2", ValueError)])
def test_check_positive_int(value, error):
    if error is None:
        assert v.check_positive_int(value, "n") == value
    else:
        with pytest.raises(error, match="n must be a positive int"):
            v.check_positive_int(value, "n")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, float("inf")])
def test_check_number_refuses_non_finite_values(value):
    with pytest.raises(ValueError, match="finite"):
        v.check_number(value, "damp", 0.0)


def test_check_number_bounds_and_types():
    assert v.check_number(0, "x", 0.0) == 0.0 and v.check_number(torch.tensor(0.5), "x", 0.0, high=1.0) == 0.5
    with pytest.raises(ValueError, match=r"x must be > 0"):
        v.check_number(0, "x", 0.0, low_inclusive=False)
    with pytest.raises(ValueError, match=r"< 1"):
        v.check_number(1.0, "x", 0.0, high=1.0, high_inclusive=False)
    for bad in (True, "1", None, [1.0]):
        with pytest.raises(TypeError, match="must be a number"):
            v.check_number(bad, "x")


def test_check_choice_and_bool_and_module():
    assert v.check_choice("mse", "grid", ("minmax", "mse")) == "mse"
    assert v.check_choice(None, "pattern", (None, "2:4")) is None
    with pytest.raises(ValueError, match=r"grid must be one of \('minmax', 'mse'\), got 'MSE'"):
        v.check_choice("MSE", "grid", ("minmax", "mse"))
    with pytest.raises(TypeError, match="grid must be one of"):
        v.check_choice(None, "grid", ("minmax", "mse"))
    with pytest.raises(TypeError, match="True or False"):
        v.check_bool(1, "flag")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        v.check_module("model")
    assert isinstance(v.check_module(nn.Linear(2, 2)), nn.Linear)


@pytest.mark.parametrize("W,error,match", [
    (torch.randn(4, 8), None, None),
    (torch.randn(8), ValueError, "2-D"),
    (torch.full((2, 2), math.nan), ValueError, "NaN"),
    (torch.ones(2, 2, dtype=torch.int32), TypeError, "floating-point"),
    (torch.full((2, 2), 1e38), ValueError, "cannot be quantized"),
    (torch.empty(2, 2, device="meta"), ValueError, "meta"),
])
def test_check_weight(W, error, match):
    if error is None:
        assert v.check_weight(W) is W
    else:
        with pytest.raises(error, match=match):
            v.check_weight(W)


def test_check_inputs_and_group_size():
    W = torch.randn(4, 8)
    assert v.check_inputs(None, W, required=False, method="rtn") is None
    with pytest.raises(ValueError, match="gptq needs calibration inputs"):
        v.check_inputs(None, W, required=True, method="gptq")
    with pytest.raises(ValueError, match=r"\(tokens, 8\)"):
        v.check_inputs(torch.randn(3, 7), W, required=True, method="gptq")
    assert v.check_group_size(None, 8) is None and v.check_group_size(4, 8) == 4
    with pytest.raises(ValueError, match="does not divide"):
        v.check_group_size(3, 8)
