"""The quantization explorer: pick bits, scheme, granularity, group size and a source tensor; see the error.

Every redraw calls `qlearn.teaching.sweep.roundtrip` (the same function a notebook calls directly) and draws
`qlearn.plots.error_histogram`, so what the widget shows is exactly what the package computes.
"""

from __future__ import annotations

import ipywidgets as w
import torch

from ..core.granularity import PerChannel, PerGroup, PerTensor
from ..core.validation import check_bits, check_bool, check_float_tensor
from ..data.tensors import is_ready, sample_tensor
from ..plots import error_histogram
from ..teaching.sweep import roundtrip
from ._base import Explorer

__all__ = ["ACTIVATIONS", "CUSTOM", "GRANULARITIES", "GROUP_SIZES", "LOADING", "SOURCES", "make_granularity",
           "quantization_explorer"]

GRANULARITIES = ("tensor", "channel", "group")
GROUP_SIZES = (8, 16, 32, 64, 128)
SOURCES = {  # label -> qlearn.data.tensors.sample_tensor name
    "Gaussian (256 x 512)": "gaussian",
    "ReLU-like, non-negative (256 x 512)": "relu",
    "heavy-tailed, a few outliers (256 x 512)": "outliers",
    "MiniLM weight (384 x 384)": "minilm_weight",
    "MiniLM activation (tokens x 1536)": "minilm_activation",
}
ACTIVATIONS = ("minilm_activation",)  # quantized at run time: no stored bits per weight to show
CUSTOM = "custom"
LOADING = "<i>loading MiniLM (a few seconds, the first time only)...</i>"


def make_granularity(name: str, group_size: int = 128):
    """'tensor' -> PerTensor(), 'channel' -> PerChannel(0) (one scale per row), 'group' -> PerGroup(group_size)."""
    if name == "tensor":
        return PerTensor()
    if name == "channel":
        return PerChannel(0)
    if name == "group":
        return PerGroup(group_size)
    raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {name!r}")


def _describe(bits, symmetric, gran_name, group_size) -> str:
    where = {"tensor": "per tensor", "channel": "per channel (row)", "group": f"per group of {group_size}"}[gran_name]
    return f"{bits}-bit {'symmetric' if symmetric else 'asymmetric'}, {where}"


def _same_sample(x: torch.Tensor) -> str | None:
    """The sample tensor name whose tensor equals x (so it is not offered twice), or None.

    Only the cheap ones are compared: the synthetic tensors and the MiniLM weight (read from its file).
    """
    for name in ("gaussian", "relu", "outliers", "minilm_weight"):
        shape = (384, 384) if name == "minilm_weight" else (256, 512)
        if tuple(x.shape) == shape and x.dtype == torch.float32 and torch.equal(x.cpu(), sample_tensor(name)):
            return name
    return None


def quantization_explorer(x: torch.Tensor | None = None, bits: int = 8, symmetric: bool = False,
                          title: str = "tensor", granularity: str = "tensor", group_size: int = 128,
                          source: str | None = None, show_granularity: bool = True) -> Explorer:
    """A widget: bits (2-8), scheme, granularity, group size and source tensor; redraws the error histogram.

    It prints MSE, SQNR, max |error| and, for a weight, the effective bits per weight, counting a float32
    scale (and an int8 zero point when asymmetric) per block, as `qlearn.core.bits` and QuantLinear do. `x`, if
    given, is offered as the source called `title` (or, if it is one of the sample tensors, that entry is
    renamed `title`); `source` picks a sample tensor by name instead (see `qlearn.data.tensors.SAMPLE_TENSORS`).
    `show_granularity=False` hides the granularity and group-size controls (notebook 02, before
    granularity is taught) and keeps `granularity`.
    After each redraw `explorer.last` holds {"mse", "sqnr_db", "max_abs_error", "bits", "symmetric"} (the keys
    notebook 02 prints) and `explorer.info` holds {"effective_bits", "granularity", "source", "shape"}
    ("effective_bits" is None for an activation), or {"error": message} (and `last` is empty) when a
    setting is impossible for the tensor.
    Shapes: x (...) any float tensor; group granularity needs its last dim divisible by the group size.
    """
    if x is not None:
        check_float_tensor(x)
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    check_bool(show_granularity, "show_granularity")
    make_granularity(granularity, group_size)
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size must be one of {GROUP_SIZES}, got {group_size!r}")
    samples = dict(SOURCES)
    same = _same_sample(x) if x is not None else None
    if same is not None:  # x is a sample tensor: offer it once, under the caller's title
        samples = {(f"{title} {tuple(x.shape)}" if v == same else label): v for label, v in SOURCES.items()}
    options = (([(f"{title} {tuple(x.shape)}", CUSTOM)] if x is not None and same is None else [])
               + list(samples.items()))
    names = [value for _, value in options]
    if source is None:
        source = same or (CUSTOM if x is not None else "gaussian")
    if source not in names:
        raise ValueError(f"source must be one of {', '.join(names)}, got {source!r}")

    bits_w = w.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False)
    style = {"button_width": "110px", "description_width": "80px"}
    scheme_w = w.ToggleButtons(options=["asymmetric", "symmetric"], value="symmetric" if symmetric else "asymmetric",
                               description="scheme", style=style)
    gran_w = w.ToggleButtons(options=list(GRANULARITIES), value=granularity, description="granularity", style=style)
    group_w = w.Dropdown(options=list(GROUP_SIZES), value=group_size, description="group size",
                         disabled=granularity != "group")
    source_w = w.Dropdown(options=options, value=source, description="tensor", layout=w.Layout(width="420px"))
    readout, out = w.HTML(), w.Output()
    rows = [w.HBox([bits_w, scheme_w])] + ([w.HBox([gran_w, group_w])] if show_granularity else [])
    box = w.VBox(rows + [source_w, readout, out])
    controls = {"bits": bits_w, "scheme": scheme_w, "source": source_w}
    if show_granularity:
        controls.update(granularity=gran_w, group_size=group_w)
    explorer = Explorer(box, controls, out, title="quantization explorer")
    explorer.info, explorer.readout = {}, readout

    def redraw(*_):
        b, sym, gname, g = int(bits_w.value), scheme_w.value == "symmetric", gran_w.value, int(group_w.value)
        group_w.disabled = gname != "group"
        if source_w.value != CUSTOM and not is_ready(source_w.value):
            readout.value = LOADING  # sent to the page at once; the load below takes seconds
        tensor = x if source_w.value == CUSTOM else sample_tensor(source_w.value)
        label = next(lab for lab, value in options if value == source_w.value)
        what = _describe(b, sym, gname, g)
        try:
            gran = make_granularity(gname, g)
            x_hat, numbers = roundtrip(tensor, b, sym, gran)
        except ValueError as err:  # e.g. a group size that does not divide a custom tensor's last dim
            explorer.last, explorer.info = {}, {"error": str(err), "source": source_w.value}
            readout.value = f"<b>{what}</b>: not possible here: {err}"
            out.outputs = ()
            explorer.figure = None
            explorer.calls += 1
            return
        activation = source_w.value in ACTIVATIONS
        explorer.last = {key: numbers[key] for key in ("mse", "sqnr_db", "max_abs_error")}
        explorer.last.update(bits=b, symmetric=sym)
        explorer.info = {"effective_bits": None if activation else numbers["effective_bits"], "granularity": gran,
                         "source": source_w.value, "shape": tuple(tensor.shape)}
        meta = "a float32 scale" + ("" if sym else " and an int8 zero point")  # qlearn.core.bits' count, as QuantLinear
        cost = ("an activation: quantized on the fly at run time, so no bits are stored per weight" if activation
                else f"effective bits per weight <b>{numbers['effective_bits']:.3f}</b> ({b}-bit codes + {meta} "
                     "per block)")
        readout.value = (f"<b>{what}</b> on {label}: MSE {numbers['mse']:.3g}, SQNR {numbers['sqnr_db']:.1f} dB, "
                         f"max |error| {numbers['max_abs_error']:.3g}<br>{cost}")
        explorer.show(error_histogram(tensor, x_hat, title=f"{label.split(' (')[0]}: {what}"))
        explorer.calls += 1

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return explorer
