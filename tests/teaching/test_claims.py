"""check_claims: one line per claim, ✔ or ✘, and clear errors for anything that is not a boolean claim."""

import numpy as np
import pytest
import torch

from qlearn.teaching.claims import check_claims


def test_holding_and_broken_claims_read_differently():
    good = check_claims({"a > b": 3 > 2, "tensor claim": torch.tensor(1.0) < 2, "numpy claim": np.float64(1) > 0})
    assert good.all_hold and repr(good) == "✔ a > b\n✔ tensor claim\n✔ numpy claim"
    bad = check_claims({"a > b": 1 > 2})
    assert not bad.all_hold and repr(bad) == "✘ does not hold: a > b"


@pytest.mark.parametrize("claims", [{}, [("x", True)], {"": True}, {3: True}, {"x": 1}, {"x": None},
                                    {"x": torch.tensor([True, False])}], ids=str)
def test_bad_claims_are_refused(claims):
    with pytest.raises(TypeError):
        check_claims(claims)
