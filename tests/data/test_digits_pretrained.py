"""The shipped digits MLPs load, have the documented shapes and accuracy, and bad sizes are refused."""

import pytest

from qlearn.data import digits


@pytest.mark.parametrize("hidden,at_least", [(128, 95.0), (256, 96.0)], ids=["baseline-128", "teacher-256"])
def test_pretrained_mlp_loads_and_is_accurate(data, hidden, at_least):
    model = digits.pretrained_mlp(hidden)
    assert model[0].out_features == hidden and not model.training
    assert digits.accuracy(model, data) >= at_least


@pytest.mark.parametrize("hidden", [64, 0, "256", True, None])
def test_pretrained_mlp_refuses_sizes_it_does_not_ship(hidden):
    with pytest.raises(ValueError, match="ships hidden sizes"):
        digits.pretrained_mlp(hidden)
