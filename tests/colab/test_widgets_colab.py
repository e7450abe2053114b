"""The course widgets on whichever ipywidgets is installed: 8.x locally, 7.7.1 in the Colab-pinned venv.

No kernel is needed: setting a control's value runs the callback, so we check what it computed
and drew. (The browser test checks the same widgets through a real frontend.)
"""

from __future__ import annotations

import ipywidgets
import matplotlib
import pytest
import torch

from qlearn.widgets import bit_layout_explorer, quantization_explorer

matplotlib.use("Agg")


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(64, 32)


def test_quantization_explorer_redraws_on_bits_and_scheme(x):
    explorer = quantization_explorer(x, bits=8)
    bits, scheme = explorer.controls["bits"], explorer.controls["scheme"]
    assert isinstance(bits, ipywidgets.IntSlider) and (bits.min, bits.max) == (2, 8)
    assert bits.continuous_update is False
    first = dict(explorer.last)
    assert explorer.calls == 1 and first["bits"] == 8 and first["symmetric"] is False

    bits.value = 3
    assert explorer.calls == 2 and explorer.last["bits"] == 3
    assert explorer.last["mse"] > first["mse"]  # fewer bits, larger error
    assert "3-bit" in explorer.figure.axes[0].get_title()

    scheme.value = "symmetric"
    assert explorer.calls == 3 and explorer.last["symmetric"] is True and explorer.last["bits"] == 3


def test_quantization_explorer_state_serializes(x):
    """The state a frontend receives is plain JSON on this ipywidgets version."""
    explorer = quantization_explorer(x)
    state = explorer.controls["bits"].get_state()
    assert state["value"] == 8 and state["_model_name"] == "IntSliderModel"
    assert explorer.box.get_state()["_model_name"] == "VBoxModel"


def test_bit_layout_explorer_follows_the_value():
    explorer = bit_layout_explorer(1.0)
    assert explorer.calls == 1
    explorer.controls["value"].value = "0.1"  # a text box, so that -0.0 keeps its sign
    assert explorer.calls == 2 and explorer.last and all(v is not None for v in explorer.last.values())
