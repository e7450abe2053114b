"""QuantLinear: real integer storage, the reference path equals fake quantization bit for bit, bad input, and its
kernel choice, made once per kind of input and made again after each change of the layer."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qlearn import PerChannel, PerGroup, PerTensor, PerToken, QuantLinear, choose_qparams, fake_quantize
from qlearn.inference import kernels

CASES = [(b, g, s) for b in (2, 3, 4, 8) for g in (PerTensor(), PerChannel(0), PerGroup(32)) for s in (True, False)]


def _layer(seed=0, in_features=96, out_features=48, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


@pytest.mark.parametrize("bits,granularity,symmetric", CASES,
                         ids=[f"{b}bit-{g}-{'sym' if s else 'asym'}" for b, g, s in CASES])
def test_reference_equals_fake_quantize_bit_for_bit(bits, granularity, symmetric):
    lin = _layer()
    x = torch.randn(7, 96)
    qp = choose_qparams(lin.weight, bits=bits, symmetric=symmetric, granularity=granularity)
    layer = QuantLinear.from_linear(lin, qparams=qp, kernel="reference")
    expected = F.linear(x, fake_quantize(lin.weight, qparams=qp), lin.bias)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.dequantized_weight(), fake_quantize(lin.weight, qparams=qp))


@pytest.mark.parametrize("bits,dtype,cols", [(8, torch.int8, 96), (4, torch.uint8, 48), (3, torch.uint8, 48),
                                             (2, torch.uint8, 24)], ids=["int8", "int4", "int3", "int2"])
def test_weights_are_stored_as_integers(bits, dtype, cols):
    layer = QuantLinear.from_linear(_layer(), bits=bits, granularity=PerGroup(32))
    assert layer.weight_q.dtype == dtype and layer.weight_q.shape == (48, cols)
    assert layer.scale.shape == (48, 3, 1) and layer.zero_point.dtype == torch.int8
    assert not any(p.dtype == torch.float32 and p.ndim == 2 for p in layer.parameters())


def test_from_linear_without_qparams_matches_choose_qparams():
    lin = _layer(bias=False)
    layer = QuantLinear.from_linear(lin, bits=4, granularity=PerGroup(32), symmetric=False, kernel="reference")
    qp = choose_qparams(lin.weight, bits=4, symmetric=False, granularity=PerGroup(32))
    assert layer.bias is None
    assert torch.equal(layer.dequantized_weight(), fake_quantize(lin.weight, qparams=qp))


def test_w8a8_reference_quantizes_activations_per_token():
    lin = _layer()
    x = torch.randn(5, 96) * torch.logspace(-2, 2, 5).unsqueeze(1)
    layer = QuantLinear.from_linear(lin, activations=8, kernel="reference")
    x_hat = fake_quantize(x, bits=8, symmetric=True, granularity=PerToken())
    assert torch.equal(layer(x), F.linear(x_hat, layer.dequantized_weight(), lin.bias))


def test_leading_dims_and_bfloat16_input():
    layer = QuantLinear.from_linear(_layer(), kernel="reference")
    x = torch.randn(2, 3, 96)
    assert layer(x).shape == (2, 3, 48)
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_quantized_weights_are_close_to_float():
    lin = _layer()
    x = torch.randn(16, 96)
    with torch.no_grad():
        errors = [float((QuantLinear.from_linear(lin, bits=b)(x) - lin(x)).norm()) for b in (8, 4, 2)]
    assert errors[0] < errors[1] < errors[2]


def test_state_dict_round_trip_into_skeleton():
    layer = QuantLinear.from_linear(_layer(), bits=4, granularity=PerGroup(32))
    skeleton = QuantLinear(96, 48, bits=4, granularity=PerGroup(32))
    x = torch.randn(3, 96)
    skeleton(x)  # builds a kernel cache that loading must invalidate
    skeleton.load_state_dict(layer.state_dict())
    assert torch.equal(skeleton(x), layer(x))


@pytest.mark.parametrize("kwargs,err", [
    ({"bits": 9}, ValueError), ({"bits": 4.0}, TypeError), ({"granularity": PerGroup(50)}, ValueError),
    ({"granularity": PerToken()}, ValueError), ({"kernel": "fast"}, ValueError), ({"activations": 16}, ValueError),
    ({"symmetric": 1}, TypeError), ({"granularity": PerGroup}, TypeError),
], ids=["bits-9", "bits-float", "group-not-dividing", "per-token", "kernel", "activations-16", "symmetric-int",
        "granularity-class"])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        QuantLinear.from_linear(_layer(), **kwargs)


def test_bad_layer_and_inputs():
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantLinear.from_linear(nn.Conv1d(3, 3, 1))
    with pytest.raises(ValueError, match="meta"):
        QuantLinear.from_linear(nn.Linear(4, 4, device="meta"))
    qp = choose_qparams(torch.randn(10, 96), granularity=PerChannel(0))
    with pytest.raises(ValueError, match="do not fit"):
        QuantLinear.from_linear(_layer(), qparams=qp)
    layer = QuantLinear.from_linear(_layer())
    with pytest.raises(ValueError, match=r"\(\.\.\., 96\)"):
        layer(torch.randn(2, 95))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(2, 96, dtype=torch.int64))


@pytest.mark.parametrize("size", [0, -3, True, 2.0, "8"], ids=["zero", "negative", "bool", "float", "str"])
def test_sizes_must_be_positive_ints(size):
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        QuantLinear(size, 4)
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        QuantLinear(4, size)


# ---- the kernel choice is made once per kind of input, and made again after each change of the layer -----------

@pytest.fixture
def choices(monkeypatch):
    """Counts the calls into kernels.choose (the whole decision: validation and every path's conditions)."""
    calls = []
    choose = kernels.choose

    def counting(layer, x):
        calls.append((x.device, x.dtype, x.requires_grad))
        return choose(layer, x)

    monkeypatch.setattr(kernels, "choose", counting)
    return calls


FAST_LAYERS = {"int4_cpu": dict(bits=4, granularity=PerGroup(32), symmetric=False),
               "int8_cpu": dict(bits=8), "w8a8": dict(bits=8, activations=8)}


@pytest.mark.parametrize("name", FAST_LAYERS)
def test_kernel_is_chosen_once_per_device_dtype_and_grad(choices, name):
    layer = QuantLinear.from_linear(_layer(in_features=128, out_features=64), **FAST_LAYERS[name])
    x = torch.randn(4, 128)
    with torch.no_grad():
        first = layer(x)
        for _ in range(5):
            assert torch.equal(layer(x), first)  # the same path every time
        layer(torch.randn(2, 3, 128))  # another shape, same kind of input
        assert len(choices) == 1 and layer._cache[(x.device, x.dtype, False)].name == name
        layer(x.bfloat16())
        layer(x.bfloat16())
    assert len(choices) == 2
    layer(x.requires_grad_())
    layer(x)
    assert len(choices) == 3 and layer._cache[(x.device, x.dtype, True)].name == "reference"


def _fresh_int4(seed):
    return QuantLinear.from_linear(_layer(seed, in_features=128, out_features=64), bits=4, granularity=PerGroup(32),
                                   symmetric=False)


def _set_weight(layer):
    other = _fresh_int4(1)
    layer.set_weight(other.codes(), other.qparams())
    return other


def _load_state_dict(layer):
    other = _fresh_int4(1)
    layer.load_state_dict(other.state_dict())
    return other


def _assign_buffers(layer):
    other = _fresh_int4(1)
    layer.weight_q, layer.scale, layer.zero_point = other.weight_q, other.scale, other.zero_point
    return other


def _kernel_reference(layer):
    layer.kernel = "reference"
    return None


def _to_bfloat16_and_back(layer):
    layer.to(torch.bfloat16).float()
    return layer


EVENTS = {"set_weight": _set_weight, "load_state_dict": _load_state_dict, "assign-buffers": _assign_buffers,
          "kernel=reference": _kernel_reference, "to": _to_bfloat16_and_back}


@pytest.mark.parametrize("event", EVENTS)
def test_each_change_of_the_layer_makes_it_choose_again(choices, event):
    """After the change the layer gives exactly what a layer that never ran before gives (no stale layout)."""
    layer = _fresh_int4(0)
    x = torch.randn(3, 128)
    with torch.no_grad():
        before = layer(x)
        layer(x)
        assert len(choices) == 1 and layer._cache is not None
        other = EVENTS[event](layer)
        assert layer._cache is None
        after = layer(x)
        layer(x)
        assert len(choices) == 2
        if other is None:  # kernel="reference"
            assert kernels.select_name(layer, x) == "reference" and torch.equal(after, layer.reference_forward(x))
            layer.kernel = "auto"
            assert torch.equal(layer(x), before) and len(choices) == 3
        else:
            fresh = _fresh_int4(2)
            fresh.load_state_dict(layer.state_dict())
            assert fresh._cache is None and torch.equal(after, fresh(x))
            if other is not layer:  # new weights (after .to() only the rounding of scale and bias moved)
                assert not torch.equal(after, before)


def test_calibration_makes_a_static_layer_choose_again(choices, monkeypatch):
    layer = QuantLinear.from_linear(_layer(in_features=128), activations=8, activation_granularity=PerTensor())
    x = torch.randn(3, 128)
    with torch.no_grad():
        for _ in range(2):  # not calibrated: refused each time, nothing kept
            with pytest.raises(ValueError, match="calibrate"):
                layer(x)
        layer.set_activation_scale(0.02)
        y = layer(x)
        reads = []
        monkeypatch.setattr(QuantLinear, "calibrated", property(lambda self: reads.append(1) or True))
        for _ in range(5):  # the plan and the calibration are remembered: no scan of the scale per call
            assert torch.equal(layer(x), y)
        assert not reads and len(choices) == 3 and kernels.select_name(layer, x) == "w8a8"
        layer.set_activation_scale(0.05)
        assert layer._cache is None
        y2 = layer(x)
    assert len(choices) == 4 and not torch.equal(y2, y)


def test_a_subclass_that_pins_the_kernel_keeps_the_reference_path():
    """As HQQLinear does: a `kernel` property that always says "reference", whatever is assigned."""

    class Pinned(QuantLinear):
        @property
        def kernel(self):
            return "reference"

        @kernel.setter
        def kernel(self, value):
            self._cache = None

    layer = Pinned(128, 64, bits=4, granularity=PerGroup(32), symmetric=False)
    layer.load_state_dict(_fresh_int4(0).state_dict())
    x = torch.randn(3, 128)
    layer.kernel = "auto"
    assert torch.equal(layer(x), layer.reference_forward(x)) and kernels.select_name(layer, x) == "reference"


def test_a_subclass_that_rescales_its_input_keeps_the_fast_path(choices):
    """As AWQLinear does: forward divides the input by a buffer, then calls QuantLinear.forward."""

    class Rescaled(QuantLinear):
        def forward(self, x):
            return super().forward(x / self.input_scale.to(x.dtype))

    layer = Rescaled(128, 64, bits=4, granularity=PerGroup(32), symmetric=False)
    layer.load_state_dict(_fresh_int4(0).state_dict())
    layer.register_buffer("input_scale", torch.rand(128) + 0.5)
    x = torch.randn(3, 128)
    with torch.no_grad():
        y = layer(x)
        assert torch.equal(layer(x), y) and len(choices) == 1
        assert layer._cache[(x.device, x.dtype, False)].name == "int4_cpu"
        ref = layer.reference_forward(x / layer.input_scale)
    assert float((y - ref).norm() / ref.norm()) < 1e-2  # the bfloat16 kernel's tolerance (test_kernels.BF16_TOL)
