"""The quantization explorer: pick bits and scheme, see the error histogram and the numbers."""

from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from .. import metrics
from .._validate import check_float_tensor
from ..granularity import PerTensor
from ..plots import error_histogram
from ..primitives import choose_qparams, dequantize, quantize
from ._base import Explorer


def quantize_report(x: torch.Tensor, bits: int, symmetric: bool, granularity=PerTensor()):
    """Quantize and dequantize x; return (x_hat, {"mse", "sqnr_db", "max_abs_error"})."""
    qp = choose_qparams(x, bits, symmetric, granularity)
    x_hat = dequantize(quantize(x, qp), qp)
    return x_hat, {"mse": metrics.mse(x, x_hat), "sqnr_db": metrics.sqnr_db(x, x_hat),
                   "max_abs_error": metrics.max_abs_error(x, x_hat)}


def quantization_explorer(x: torch.Tensor, bits: int = 8, symmetric: bool = False, title: str = "tensor") -> Explorer:
    """A widget with a bits slider (2-8) and a scheme toggle that redraws the error histogram of `x`."""
    check_float_tensor(x)
    bits_w = w.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False)
    scheme_w = w.ToggleButtons(options=["asymmetric", "symmetric"], value="symmetric" if symmetric else "asymmetric",
                               description="scheme")
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([w.HBox([bits_w, scheme_w]), readout, out]),
                        {"bits": bits_w, "scheme": scheme_w}, out)

    def redraw(*_):
        b, sym = int(bits_w.value), scheme_w.value == "symmetric"
        x_hat, numbers = quantize_report(x, b, sym)
        explorer.last = dict(numbers, bits=b, symmetric=sym)
        readout.value = (f"<b>{b}-bit {scheme_w.value}</b>: MSE {numbers['mse']:.3g}, "
                         f"SQNR {numbers['sqnr_db']:.1f} dB, max |error| {numbers['max_abs_error']:.3g}")
        with out:
            out.clear_output(wait=True)
            fig = error_histogram(x, x_hat, title=f"{title}: {b}-bit {scheme_w.value}")
            display(fig)
            explorer.figure = fig
            plt.close(fig)
        explorer.calls += 1

    bits_w.observe(redraw, names="value")
    scheme_w.observe(redraw, names="value")
    redraw()
    return explorer
