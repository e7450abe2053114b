"""The bit-layout explorer redraws as the value changes, and agrees with qlearn.core.dtypes."""

import re

import pytest

from qlearn.core import dtypes
from qlearn.widgets import bit_layout_explorer


@pytest.mark.parametrize("value", [0.1, -2.0, 70000.0, 1e-8])
def test_bit_layout_explorer_updates(value):
    explorer = bit_layout_explorer(1.0)
    calls = explorer.calls
    explorer.controls["value"].value = repr(value)  # a text box: what the learner types
    assert explorer.calls == calls + 1
    for name in dtypes.FLOAT_DTYPES:
        lay = dtypes.bit_layout(value, name)
        assert explorer.last[name] == lay.stored
        assert lay.bits in re.sub(r"<[^>]+>", "", explorer.output.value)
    assert "float8_e4m3fn" in explorer.output.value


def test_bit_layout_explorer_rejects_text():
    with pytest.raises(TypeError):
        bit_layout_explorer("pi")


@pytest.mark.parametrize("text, value",
                         [("-0.0", -0.0), ("-0", -0.0), ("0.0", 0.0), ("1e-8", 1e-8), ("inf", float("inf"))],
                         ids=["minus-zero", "minus-zero-int", "zero", "tiny", "inf"])
def test_typed_text_keeps_its_sign(text, value):
    """-0.0 must show sign bit 1 in every format, as dtypes.bit_layout(-0.0) does."""
    import math

    explorer = bit_layout_explorer(1.0)
    explorer.controls["value"].value = text
    for name in dtypes.FLOAT_DTYPES:
        lay = dtypes.bit_layout(value, name)
        assert math.copysign(1.0, explorer.last[name]) == math.copysign(1.0, value)
        assert lay.bits in re.sub(r"<[^>]+>", "", explorer.output.value)
    if text.startswith("-"):
        assert all(dtypes.bit_layout(value, n).sign == "1" for n in dtypes.FLOAT_DTYPES)


def test_start_value_minus_zero_and_text_that_is_not_a_number():
    explorer = bit_layout_explorer(-0.0)
    assert explorer.controls["value"].value == "-0.0" and str(explorer.last["float32"]) == "-0.0"
    explorer.controls["value"].value = "pi"
    assert explorer.last == {} and "not a number" in explorer.output.value


def test_saved_output_is_the_table_and_a_one_line_message():
    bundle = bit_layout_explorer(0.1)._repr_mimebundle_()
    assert "Run this cell" in bundle["text/plain"]
    if int(__import__("ipywidgets").__version__.split(".")[0]) >= 8:  # ipywidgets 7 (Colab): the widget only
        assert "<table>" in bundle["text/html"]
    else:
        assert "text/html" not in bundle
