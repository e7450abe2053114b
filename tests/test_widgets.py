"""The quantization explorer, built without a kernel: every control over its whole range redraws the
figure and shows the numbers qlearn computes when called directly."""

import itertools

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qlearn.sweep import roundtrip  # noqa: E402
from qlearn.tensors import sample_tensor  # noqa: E402
from qlearn.widgets import quantization_explorer  # noqa: E402
from qlearn.widgets.explorer import GROUP_SIZES, SOURCES, make_granularity  # noqa: E402


def _x():
    torch.manual_seed(0)
    return torch.randn(32, 128)


def _check(explorer, x, bits, symmetric, granularity):
    x_hat, numbers = roundtrip(x, bits, symmetric, granularity)
    assert list(explorer.last) == ["mse", "sqnr_db", "max_abs_error", "bits", "symmetric"]  # notebook 02 prints these
    for key in ("mse", "sqnr_db", "max_abs_error"):
        assert explorer.last[key] == numbers[key], key
    assert explorer.info["effective_bits"] == numbers["effective_bits"]
    assert explorer.last["bits"] == bits and explorer.last["symmetric"] == symmetric
    assert explorer.info["granularity"] == granularity
    assert isinstance(explorer.figure, Figure)
    counts = sum(p.get_height() for p in explorer.figure.axes[0].patches)
    assert counts == x.numel()  # the histogram holds every element's error
    assert f"{numbers['effective_bits']:.3f}" in explorer.box.children[3].value  # the readout


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
    assert "4.312" in e.box.children[3].value and "int8 zero point" in e.box.children[3].value
    assert "SQNR" in e.box.children[3].value


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
