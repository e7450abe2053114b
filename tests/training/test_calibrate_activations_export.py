"""calibrate_activations is reachable from the top of the package, where quantize_model's errors point."""

import pytest
import torch
from torch import nn

import qlearn
from qlearn.core.granularity import PerTensor
from qlearn.training import calibrate


def test_top_level_name_is_the_training_function():
    assert qlearn.calibrate_activations is calibrate.calibrate_activations
    assert "calibrate_activations" in qlearn.__all__


def test_uncalibrated_static_layer_names_the_top_level_function():
    model = nn.Sequential(nn.Linear(16, 8))
    qlearn.quantize_model(model, bits=8, activations=8, activation_granularity=PerTensor())
    with pytest.raises(ValueError, match=r"qlearn\.calibrate_activations"):
        model(torch.randn(2, 16))
    qlearn.calibrate_activations(model, [torch.randn(4, 16)])
    assert torch.isfinite(model(torch.randn(2, 16))).all()
