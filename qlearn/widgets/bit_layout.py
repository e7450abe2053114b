"""The bit-layout explorer: type a number, see how each float format stores it."""

from __future__ import annotations

import html
import math

import ipywidgets as w

from ..core.dtypes import FLOAT_DTYPES, bit_layout
from ._base import Explorer

__all__ = ["bit_layout_explorer", "layout_table_html", "parse_number"]

_COLORS = {"sign": "#d62728", "exponent": "#1f77b4", "mantissa": "#2ca02c"}


def layout_table_html(value: float, dtypes=tuple(FLOAT_DTYPES)) -> str:
    """An HTML table: one row per dtype with its colored sign | exponent | mantissa bits and the stored value."""
    rows = []
    for name in dtypes:
        lay = bit_layout(value, name)
        bits = "".join(f'<span style="color:{_COLORS[part]}">{getattr(lay, part)}</span>'
                       for part in ("sign", "exponent", "mantissa"))
        rows.append(f"<tr><td>{html.escape(name)}</td><td style='font-family:monospace'>{bits}</td>"
                    f"<td style='font-family:monospace'>{lay.stored!r}</td></tr>")
    head = ("<tr><th>dtype</th><th><span style='color:#d62728'>sign</span> "
            "<span style='color:#1f77b4'>exponent</span> <span style='color:#2ca02c'>mantissa</span></th>"
            "<th>value stored</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def parse_number(text: str) -> float | None:
    """The float a learner typed, keeping the sign of -0.0; also '1e-8', 'inf', 'nan'. None if not a number.

    A FloatText widget would lose the sign: the browser sends -0 as JSON, which has no negative zero.
    """
    try:
        return float(str(text).strip().replace("_", ""))
    except ValueError:
        return None


def bit_layout_explorer(value: float = 3.14159) -> Explorer:
    """A widget: a number box; every float format's bits and the value it really stores update as you type."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a number, got {value!r}")
    text = "-0.0" if value == 0 and math.copysign(1.0, value) < 0 else repr(float(value))
    box = w.Text(value=text, description="value", continuous_update=False)
    table = w.HTML()
    explorer = Explorer(w.VBox([box, table]), {"value": box}, table, title="bit-layout explorer")
    explorer.static_html = lambda: table.value

    def redraw(*_):
        v = parse_number(box.value)
        if v is None:
            table.value = (f"<b>{html.escape(str(box.value))!s}</b> is not a number: type one such as 0.1, -0.0, "
                           "1e-8 or inf")
            explorer.last = {}
        else:
            table.value = layout_table_html(v)
            explorer.last = {name: bit_layout(v, name).stored for name in FLOAT_DTYPES}
        explorer.calls += 1

    box.observe(redraw, names="value")
    redraw()
    return explorer
