"""Tests for qlearn.compression.prune, qlearn.compression.schedules and qlearn.compression.structured.

Oracles: torch.nn.utils.prune (l1_unstructured, global_unstructured, ln_structured) on the same
layers. Properties: exactly floor(s * N) weights removed and they are the smallest; a physically
smaller model computes the same function as the original with those units' outputs cut off.
"""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

from qlearn.compression.prune import (
    global_magnitude_masks,
    magnitude_mask,
    magnitude_prune,
    prunable_layers,
    prune_model,
    remove_masks,
    weight_sparsity,
)
from qlearn.compression.schedules import gradual_prune, sensitivity_scan, sparsity_schedule
from qlearn.compression.structured import prune_units, unit_scores, units_to_keep
from qlearn.data import digits
from tests.conftest import DEVICES

MLP_PAIRS = [("0", "2"), ("2", "4")]
CNN_PAIRS = [("1", "3"), ("3", "7")]  # Conv -> Conv, then Conv -> MaxPool -> Flatten -> Linear


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_mlp(data):
    model = digits.mlp(hidden=32, seed=0)
    digits.train(model, data, epochs=8, lr=1e-2)
    return model


# ---------- unstructured: masks ----------

@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), sparsity=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_mask_removes_exactly_floor_s_n_smallest(rows, cols, sparsity, seed):
    W = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    mask = magnitude_mask(W, sparsity)
    k = math.floor(sparsity * W.numel())
    assert mask.dtype == torch.bool and mask.shape == W.shape
    assert int((~mask).sum()) == k
    if 0 < k < W.numel():
        assert float(W.abs()[~mask].max()) <= float(W.abs()[mask].min())
    W_pruned = magnitude_prune(W, sparsity)
    assert torch.equal(W_pruned[mask], W[mask]) and bool((W_pruned[~mask] == 0).all())


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 1.0], ids=lambda s: f"s={s}")
def test_mask_matches_torch_l1_unstructured(sparsity):
    torch.manual_seed(0)
    layer = nn.Linear(37, 23)
    k = math.floor(sparsity * layer.weight.numel())
    ours = magnitude_mask(layer.weight, sparsity)
    torch_prune.l1_unstructured(layer, "weight", amount=k)  # an int amount: exactly k weights
    assert torch.equal(ours, layer.weight_mask.bool())


@pytest.mark.parametrize("sparsity", [0.25, 0.6, 0.95], ids=lambda s: f"s={s}")
def test_global_masks_match_torch_global_unstructured(sparsity):
    model = digits.mlp(hidden=24, seed=1)
    layers = prunable_layers(model)
    ours = global_magnitude_masks({n: m.weight for n, m in layers.items()}, sparsity)
    total = sum(m.weight.numel() for m in layers.values())
    torch_prune.global_unstructured([(m, "weight") for m in layers.values()], torch_prune.L1Unstructured,
                                    amount=math.floor(sparsity * total))
    for name, module in layers.items():
        assert torch.equal(ours[name], module.weight_mask.bool()), name
    removed = sum(int((~mask).sum()) for mask in ours.values())
    assert removed == math.floor(sparsity * total)


def test_global_pruning_spreads_unevenly_across_layers():
    model = digits.mlp(hidden=32, seed=0)
    with torch.no_grad():
        w = model[4].weight
        w.copy_(w.sign() * (w.abs() + 1.0))  # every |w| of the last layer now exceeds every other layer's
    masks = prune_model(model, 0.5, scope="global")
    assert bool(masks["4"].all())  # none of its weights is among the smallest half
    assert weight_sparsity(model)["0"] > 0.5


# ---------- unstructured: whole models ----------

@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_model_keeps_zeros_while_training(data, scope):
    model = digits.mlp(hidden=16, seed=0)
    masks = prune_model(model, 0.7, scope=scope)
    digits.train(model, data, epochs=2)
    for name, module in prunable_layers(model).items():
        assert bool((module.weight[~masks[name]] == 0).all())
        assert bool((module.weight[masks[name]] != 0).all())
    remove_masks(model)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("weight_orig") for n in names) and not list(model.named_buffers())
    if scope == "layer":
        for name, module in prunable_layers(model).items():
            n = module.weight.numel()
            assert weight_sparsity(model)[name] == math.floor(0.7 * n) / n


def test_pruning_twice_only_removes_more():
    model = digits.mlp(hidden=16, seed=0)
    first = prune_model(model, 0.4)
    second = prune_model(model, 0.8)
    for name in first:
        assert bool((~second[name] | first[name]).all())  # nothing removed comes back
        assert int((~second[name]).sum()) == math.floor(0.8 * second[name].numel())


def test_prune_model_only_touches_named_layers():
    model = digits.mlp(hidden=16, seed=0)
    before = model[4].weight.clone()
    prune_model(model, 0.9, layers=["0"])
    assert torch.equal(model[4].weight, before)
    assert weight_sparsity(model, ["0"])["0"] == math.floor(0.9 * 1024) / 1024


# ---------- schedule and sensitivity ----------

@pytest.mark.parametrize("s_i,s_f,n", [(0.0, 0.9, 10), (0.2, 0.8, 4), (0.5, 0.5, 3)], ids=["0-90%", "20-80%", "flat"])
def test_cubic_schedule_endpoints_monotone_and_fast_first(s_i, s_f, n):
    s = [sparsity_schedule(t, s_f, n, s_i, start_step=2) for t in range(0, n + 5)]
    assert s[0] == s[1] == s[2] == s_i and s[-1] == pytest.approx(s_f) and s[2 + n] == pytest.approx(s_f)
    steps = [b - a for a, b in zip(s[2:2 + n], s[3:3 + n])]
    assert all(x >= 0 for x in steps)
    assert all(a >= b - 1e-12 for a, b in zip(steps, steps[1:]))  # increments shrink: prune fast, then slow


def test_gradual_pruning_beats_one_shot_without_fine_tuning(data, trained_mlp):
    one_shot = copy.deepcopy(trained_mlp)
    prune_model(one_shot, 0.9, scope="global")
    remove_masks(one_shot)
    gradual = copy.deepcopy(trained_mlp)
    reached = gradual_prune(gradual, data, 0.9, n_steps=3, epochs_per_step=1, lr=1e-2)
    assert reached[-1] == pytest.approx(0.9) and reached == sorted(reached)
    assert weight_sparsity(gradual)["total"] == pytest.approx(0.9, abs=1e-3)
    assert weight_sparsity(one_shot)["total"] == pytest.approx(0.9, abs=1e-3)
    assert not any(torch_prune.is_pruned(m) for m in gradual.modules())
    assert digits.accuracy(gradual, data) > digits.accuracy(one_shot, data)


def test_sensitivity_scan_leaves_model_alone(data, trained_mlp):
    before = copy.deepcopy(trained_mlp.state_dict())
    scan = sensitivity_scan(trained_mlp, [0.0, 0.5, 0.99], lambda m: digits.accuracy(m, data))
    assert list(scan) == ["0", "2", "4"]
    base = digits.accuracy(trained_mlp, data)
    assert all(acc[0] == base for acc in scan.values())
    assert all(acc[2] < base for acc in scan.values())  # 99% of one layer gone always hurts
    for k, v in trained_mlp.state_dict().items():
        assert torch.equal(v, before[k])


# ---------- structured ----------

@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9], ids=lambda s: f"s={s}")
def test_units_match_torch_ln_structured(sparsity):
    torch.manual_seed(3)
    layer = nn.Linear(20, 40)
    keep = units_to_keep(layer.weight, sparsity)
    torch_prune.ln_structured(layer, "weight", amount=math.floor(sparsity * 40), n=2, dim=0)
    kept_by_torch = layer.weight_mask.bool().all(dim=1).nonzero().flatten()
    assert torch.equal(keep, kept_by_torch)
    assert torch.allclose(unit_scores(layer.weight_orig), layer.weight_orig.norm(dim=1))


def _cut_units(model, pairs, sparsity):
    """The original model with the consumer inputs of dropped units zeroed: the function prune_units must keep."""
    ref = copy.deepcopy(model)
    mods = dict(ref.named_modules())
    for producer, consumer in pairs:
        n_units = mods[producer].weight.shape[0]
        keep = units_to_keep(dict(model.named_modules())[producer].weight, sparsity)
        dropped = torch.ones(n_units, dtype=torch.bool)
        dropped[keep] = False
        g = mods[consumer].weight.shape[1] // n_units
        with torch.no_grad():
            mods[consumer].weight[:, dropped.repeat_interleave(g)] = 0
    return ref


@pytest.mark.parametrize("name,make,pairs", [("mlp", lambda: digits.mlp(32, seed=2), MLP_PAIRS),
                                             ("cnn", lambda: digits.cnn(8, seed=2), CNN_PAIRS)], ids=["mlp", "cnn"])
@pytest.mark.parametrize("sparsity", [0.25, 0.75], ids=lambda s: f"s={s}")
def test_prune_units_is_smaller_and_computes_the_same(name, make, pairs, sparsity, data):
    model = make()
    small = prune_units(model, pairs, sparsity)
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n_params(small) < n_params(model)
    for producer, _ in pairs:
        n_out = dict(model.named_modules())[producer].weight.shape[0]
        assert dict(small.named_modules())[producer].weight.shape[0] == n_out - math.floor(sparsity * n_out)
    X = data.X_test[:50]
    with torch.no_grad():
        assert torch.allclose(small(X), _cut_units(model, pairs, sparsity)(X), atol=1e-5)
    assert n_params(model) == n_params(make())  # the original is untouched


def test_prune_units_keeps_at_least_one_unit():
    small = prune_units(digits.mlp(16), MLP_PAIRS, 1.0)
    assert small[0].weight.shape == (1, 64) and small[2].weight.shape == (1, 1) and small[4].weight.shape == (10, 1)


# ---------- bad inputs ----------

@pytest.mark.parametrize("bad,exc", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                     ("0.5", TypeError), (True, TypeError), (None, TypeError)],
                         ids=["negative", "above-one", "nan", "string", "bool", "none"])
def test_bad_sparsity(bad, exc):
    W = torch.randn(4, 4)
    with pytest.raises(exc, match="sparsity"):
        magnitude_mask(W, bad)
    with pytest.raises(exc, match="sparsity"):
        prune_model(digits.mlp(8), bad)
    with pytest.raises(exc, match="sparsity"):
        prune_units(digits.mlp(8), MLP_PAIRS, bad)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: magnitude_mask(torch.arange(4), 0.5), TypeError, "floating-point"),
    (lambda: magnitude_mask([1.0, 2.0], 0.5), TypeError, "torch.Tensor"),
    (lambda: magnitude_mask(torch.tensor([1.0, float("nan")]), 0.5), ValueError, "NaN"),
    (lambda: global_magnitude_masks({}, 0.5), TypeError, "non-empty dict"),
    (lambda: prune_model(digits.mlp(8), 0.5, scope="row"), ValueError, "scope"),
    (lambda: prune_model(digits.mlp(8), 0.5, layers=["9"]), ValueError, "no module named '9'"),
    (lambda: prune_model(digits.mlp(8), 0.5, layers="0"), TypeError, "list of module names"),
    (lambda: prune_model(digits.mlp(8), 0.5, layers=["1"]), ValueError, "no weight"),
    (lambda: prune_model(digits.mlp(8), 0.5, layers=[]), ValueError, "empty"),
    (lambda: prune_model("model", 0.5), TypeError, "torch.nn.Module"),
    (lambda: prune_model(nn.ReLU(), 0.5), ValueError, "no module with a weight"),
    (lambda: sparsity_schedule(-1, 0.5, 10), ValueError, "step"),
    (lambda: sparsity_schedule(1, 0.5, 0), ValueError, "n_steps"),
    (lambda: sparsity_schedule(1.5, 0.5, 10), TypeError, "step"),
    (lambda: sensitivity_scan(digits.mlp(8), [0.5], "accuracy"), TypeError, "evaluate"),
    (lambda: sensitivity_scan(digits.mlp(8), [], lambda m: 0.0), TypeError, "sparsities"),
    (lambda: sensitivity_scan(digits.mlp(8), [2.0], lambda m: 0.0), ValueError, "sparsity"),
    (lambda: prune_units(digits.mlp(8), [], 0.5), TypeError, "pairs"),
    (lambda: prune_units(digits.mlp(8), ["0", "2"], 0.5), TypeError, "tuple"),
    (lambda: prune_units(digits.mlp(8), [("0", "1")], 0.5), TypeError, "ReLU"),
    (lambda: prune_units(digits.mlp(8), [("0", "x")], 0.5), ValueError, "no module named 'x'"),
    (lambda: prune_units(digits.mlp(8), [("4", "2")], 0.5), ValueError, "multiple"),
    (lambda: prune_units(digits.mlp(8), [("0", "2"), ("0", "2")], 0.5), ValueError, "more than one pair"),
    (lambda: unit_scores(torch.randn(5), 2), TypeError, "2 or more dims"),
    (lambda: unit_scores(torch.randn(5, 3), 0), ValueError, "p must be"),
], ids=["int-W", "list-W", "nan-W", "empty-dict", "bad-scope", "unknown-layer", "layers-str", "relu-layer",
        "no-layers", "not-module", "nothing-to-prune", "negative-step", "zero-steps", "float-step", "evaluate-str",
        "no-sparsities", "sparsity-2", "no-pairs", "pair-not-tuple", "relu-consumer", "unknown-consumer",
        "mismatched-pair", "repeated-producer", "1d-scores", "p-zero"])
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_global_masks_need_one_device():
    if not torch.cuda.is_available():
        pytest.skip("needs a second device")
    with pytest.raises(ValueError, match="one device"):
        global_magnitude_masks({"a": torch.randn(3, 3), "b": torch.randn(3, 3, device="cuda")}, 0.5)


# ---------- notebook 07 helpers: plot, widget, exercise checks ----------

def test_weight_histogram_and_sparsity_explorer(data, trained_mlp):
    from qlearn.compression.prune import magnitude_mask
    from qlearn.plots.compression import weight_histogram
    from qlearn.widgets.compression import pruned_accuracy, sparsity_explorer

    W = trained_mlp[2].weight
    fig = weight_histogram(W, magnitude_mask(W, 0.8))
    assert len(fig.axes) == 2
    with pytest.raises(TypeError, match="bool tensor"):
        weight_histogram(W, torch.ones(3, dtype=torch.bool))
    explorer = sparsity_explorer(trained_mlp, data, layer="2", sparsity_percent=50)
    assert explorer.last["accuracy"] == pruned_accuracy(trained_mlp, data, 0.5)
    explorer.controls["sparsity"].value = 95
    explorer.controls["scope"].value = "layer"
    assert explorer.calls == 3 and explorer.last["scope"] == "layer"
    assert explorer.last["layer_sparsity"] == math.floor(0.95 * W.numel()) / W.numel()
    assert explorer.last["accuracy"] == pruned_accuracy(trained_mlp, data, 0.95, scope="layer")
    with pytest.raises(ValueError, match="no module named"):
        sparsity_explorer(trained_mlp, data, layer="7")
    with pytest.raises(TypeError, match="Digits"):
        sparsity_explorer(trained_mlp, "data", layer="2")


@pytest.mark.parametrize("device", DEVICES)
def test_pruning_runs_on_the_tensors_device(device):
    model = digits.mlp(hidden=16, seed=0).to(device)
    W = model[2].weight
    assert magnitude_mask(W, 0.5).device == W.device
    masks = prune_model(model, 0.5, scope="global")
    assert all(m.device == W.device for m in masks.values())
    small = prune_units(remove_masks(model), MLP_PAIRS, 0.5)
    X = torch.rand(4, 64, device=device)
    assert small(X).device == W.device and small[0].weight.shape == (8, 64)
