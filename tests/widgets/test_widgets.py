"""The quantization explorer, built without a kernel: every control over its whole range redraws the
figure and shows the numbers qlearn computes when called directly."""

import itertools

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qlearn.data.tensors import sample_tensor  # noqa: E402
from qlearn.teaching.sweep import roundtrip  # noqa: E402
from qlearn.widgets import quantization_explorer  # noqa: E402
from qlearn.widgets.explorer import ACTIVATIONS, GROUP_SIZES, LOADING, SOURCES, make_granularity  # noqa: E402


def _x():
    torch.manual_seed(0)
    return torch.randn(32, 128)


def _check(explorer, x, bits, symmetric, granularity):
    x_hat, numbers = roundtrip(x, bits, symmetric, granularity)
    assert list(explorer.last) == ["mse", "sqnr_db", "max_abs_error", "bits", "symmetric"]  # notebook 02 prints these
    for key in ("mse", "sqnr_db", "max_abs_error"):
        assert explorer.last[key] == numbers[key], key
    if explorer.info["source"] in ACTIVATIONS:  # no stored bits per weight for an activation
        assert explorer.info["effective_bits"] is None
        assert "effective bits" not in explorer.readout.value and "activation" in explorer.readout.value
        return _check_figure(explorer, x)
    assert explorer.info["effective_bits"] == numbers["effective_bits"]
    assert explorer.last["bits"] == bits and explorer.last["symmetric"] == symmetric
    assert explorer.info["granularity"] == granularity
    _check_figure(explorer, x)
    assert f"{numbers['effective_bits']:.3f}" in explorer.readout.value


def _check_figure(explorer, x):
    assert isinstance(explorer.figure, Figure)
    counts = sum(p.get_height() for p in explorer.figure.axes[0].patches)
    assert counts == x.numel()  # the histogram holds every element's error


def test_every_scheme_granularity_and_bits_combination():
    x = _x()
    e = quantization_explorer(x, bits=8, symmetric=False, title="test tensor")
    assert e.calls == 1
    combos = list(itertools.product(["asymmetric", "symmetric"], ["tensor", "channel", "group"], range(2, 9)))
    for scheme, gran, bits in combos:
        before = e.calls
        e.controls["scheme"].value = scheme
        e.controls["granularity"].value = gran
        e.controls["bits"].value = bits
        assert e.calls > before
        assert e.controls["group_size"].disabled == (gran != "group")
        _check(e, x, bits, scheme == "symmetric", make_granularity(gran, e.controls["group_size"].value))
    assert len(combos) == 42


@pytest.mark.parametrize("group_size", GROUP_SIZES, ids=lambda g: f"g{g}")
def test_every_group_size(group_size):
    x = _x()
    e = quantization_explorer(x, bits=4, granularity="group")
    e.controls["group_size"].value = group_size
    _check(e, x, 4, False, make_granularity("group", group_size))
    assert e.info["effective_bits"] == 4 + (32 + 8) / group_size  # float32 scale + int8 zero point, as QuantLinear


def test_every_source_tensor_including_real_minilm():
    e = quantization_explorer(bits=4, granularity="group", group_size=128)
    assert e.info["source"] == "gaussian"
    for name in SOURCES.values():
        e.controls["source"].value = name
        _check(e, sample_tensor(name), 4, False, make_granularity("group", 128))
    assert e.info["shape"][1] == 1536  # the MiniLM activation (tokens, 1536)


def test_readout_shows_effective_bits():
    e = quantization_explorer(_x(), bits=4, granularity="group", group_size=128)
    assert "4.312" in e.readout.value and "int8 zero point" in e.readout.value
    assert "SQNR" in e.readout.value


def test_impossible_group_size_is_reported_not_raised():
    x = torch.randn(8, 48)
    e = quantization_explorer(x, bits=4, granularity="group", group_size=32)
    assert "divide" in e.info["error"] and e.last == {} and e.figure is None
    e.controls["group_size"].value = 16
    _check(e, x, 4, False, make_granularity("group", 16))


def test_notebook_02_call_still_works():
    x = _x()
    e = quantization_explorer(x, bits=8, symmetric=False, title="weights")
    assert {"bits", "scheme"} <= set(e.controls) and e.calls == 1
    _check(e, x, 8, False, make_granularity("tensor"))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(bits=9), ValueError, "bits"),
    (dict(symmetric="yes"), TypeError, "symmetric"),
    (dict(granularity="row"), ValueError, "granularity"),
    (dict(group_size=7), ValueError, "group_size"),
    (dict(source="cats"), ValueError, "source"),
    (dict(x=torch.ones(3, dtype=torch.int64)), TypeError, "floating-point"),
    (dict(x=torch.tensor([1.0, float("nan")])), ValueError, "NaN"),
], ids=["bits-9", "string-symmetric", "granularity-row", "group-7", "unknown-source", "int-tensor", "nan"])
def test_bad_inputs(kwargs, err, match):
    with pytest.raises(err, match=match):
        quantization_explorer(**kwargs)


def test_notebook_02_can_hide_the_granularity_controls():
    x = _x()
    e = quantization_explorer(x, bits=8, title="weights", show_granularity=False)
    assert "granularity" not in e.controls and "group_size" not in e.controls
    shown = [c for row in e.box.children for c in getattr(row, "children", (row,))]
    assert not any(getattr(c, "description", "") in ("granularity", "group size") for c in shown)
    e.controls["bits"].value = 4
    _check(e, x, 4, False, make_granularity("tensor"))


def test_a_sample_tensor_passed_as_x_is_listed_once():
    """Notebook 02 passes the MiniLM query weight, which is also the 'MiniLM weight' sample source."""
    W = sample_tensor("minilm_weight")
    e = quantization_explorer(W, bits=8, title="MiniLM query weight")
    options = e.controls["source"].options
    assert [value for _, value in options].count("minilm_weight") == 1
    assert all(value != "custom" for _, value in options) and len(options) == len(SOURCES)
    assert e.controls["source"].value == "minilm_weight"
    assert "MiniLM query weight (384, 384)" in [label for label, _ in options]
    _check(e, W, 8, False, make_granularity("tensor"))
    other = quantization_explorer(W + 1e-3, title="shifted")  # a different tensor keeps its own entry
    assert len(other.controls["source"].options) == len(SOURCES) + 1


def test_loading_minilm_shows_a_busy_message_first():
    from qlearn.data import tensors

    tensors._LOADED.pop("minilm_weight", None)  # as in a fresh kernel
    assert not tensors.is_ready("minilm_weight") and tensors.is_ready("relu")
    e = quantization_explorer(bits=4, source="relu")
    seen = []
    e.readout.observe(lambda change: seen.append(change["new"]), names="value")
    e.controls["source"].value = "minilm_weight"
    assert seen[0] == LOADING and "SQNR" in seen[-1]
    seen.clear()
    e.controls["source"].value = "relu"
    e.controls["source"].value = "minilm_weight"  # loaded now: no busy message
    assert LOADING not in seen and tensors.is_ready("minilm_weight")


# ipywidgets 8 (what the committed notebooks are made with) also saves a picture; ipywidgets 7 (Colab's) the widget only
STATIC_PICTURE = int(__import__("ipywidgets").__version__.split(".")[0]) >= 8


def test_saved_output_is_a_static_picture_and_a_one_line_message():
    import base64

    e = quantization_explorer(_x(), bits=4)
    bundle = e._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == e.box.model_id
    assert "\n" not in bundle["text/plain"] and "Run this cell" in bundle["text/plain"]
    assert "VBox" not in bundle["text/plain"] and "VBox" not in repr(e)
    assert ("image/png" in bundle) == STATIC_PICTURE
    if STATIC_PICTURE:
        png = base64.b64decode(bundle["image/png"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_ipython_displays_the_bundle():
    from IPython.core.formatters import DisplayFormatter

    e = quantization_explorer(_x(), bits=4)
    data, _ = DisplayFormatter().format(e)
    assert "application/vnd.jupyter.widget-view+json" in data and ("image/png" in data) == STATIC_PICTURE
    assert data["text/plain"].startswith("[interactive widget: quantization explorer")


def test_group_explorer_redraws_the_package_plot():
    from qlearn.widgets import group_explorer

    W = sample_tensor("minilm_weight")
    e = group_explorer(W, bits=4, group_size=64)
    assert e.calls == 1 and isinstance(e.figure, Figure) and ("image/png" in e._repr_mimebundle_()) == STATIC_PICTURE
    e.controls["bits"].value = 3
    e.controls["group_size"].value = 128
    assert e.calls == 3 and e.last == {"bits": 3, "group_size": 128}
    assert "3 bits, group 128" in e.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="divide"):
        group_explorer(W, group_sizes=(32, 100))
    with pytest.raises(ValueError, match="group_size"):
        group_explorer(W, group_size=16)
