"""The forms a learner's numeric answer may take: the exercise tests run every check on each."""

import numpy as np
import pytest
import torch


def numeric_forms(value):
    """pytest params (id = the form) that all mean `value`: Python int/float, numpy scalars, 0-d tensors of several
    dtypes.

    Only forms that hold `value` exactly are produced (a float32 tensor cannot hold every large int).
    """
    forms = [("float", float(value)), ("np.float64", np.float64(value)), ("np.0d-array", np.array(float(value))),
             ("tensor-float64", torch.tensor(float(value), dtype=torch.float64))]
    if float(value) == int(value):
        forms += [("int", int(value)), ("np.int64", np.int64(int(value))), ("tensor-int64", torch.tensor(int(value)))]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        if float(torch.tensor(float(value), dtype=dtype)) == float(value):
            forms.append((f"tensor-{str(dtype).split('.')[1]}", torch.tensor(float(value), dtype=dtype)))
    return [pytest.param(answer, id=form) for form, answer in forms]


NOT_NUMBERS = [None, "8", True, float("nan"), [1.0], torch.tensor([1.0, 2.0])]


def computed_forms(value):
    """pytest params for `value` as a computation may leave it: Python and numpy floats, and tensors of float64,
    float32, float16 and bfloat16 (each rounded to its dtype, as a result computed in that dtype is)."""
    forms = [("float", float(value)), ("np.float64", np.float64(value)), ("np.float32", np.float32(value)),
             ("np.0d-array", np.array(float(value)))]
    forms += [(f"tensor-{str(d).split('.')[1]}", torch.tensor(float(value), dtype=d))
              for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16)]
    return [pytest.param(answer, id=form) for form, answer in forms]


def rounded(value, digits):
    """`value` rounded to `digits` significant digits, as a learner types it."""
    return float(f"{value:.{digits}g}")
