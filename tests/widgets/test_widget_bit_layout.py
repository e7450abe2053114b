"""The bit-layout explorer redraws as the value changes, and agrees with qlearn.core.dtypes."""

import re

import pytest

from qlearn.core import dtypes
from qlearn.widgets import bit_layout_explorer


@pytest.mark.parametrize("value", [0.1, -2.0, 70000.0, 1e-8])
def test_bit_layout_explorer_updates(value):
    explorer = bit_layout_explorer(1.0)
    calls = explorer.calls
    explorer.controls["value"].value = value
    assert explorer.calls == calls + 1
    for name in dtypes.FLOAT_DTYPES:
        lay = dtypes.bit_layout(value, name)
        assert explorer.last[name] == lay.stored
        assert lay.bits in re.sub(r"<[^>]+>", "", explorer.output.value)
    assert "float8_e4m3fn" in explorer.output.value


def test_bit_layout_explorer_rejects_text():
    with pytest.raises(TypeError):
        bit_layout_explorer("pi")
