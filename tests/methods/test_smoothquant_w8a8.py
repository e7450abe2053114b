"""SmoothQuant's real W8A8 path on MiniLM: smooth_model, quantize_model with static per-tensor activations,
calibrate_activations. It must give what simulate_w8a8's static per-tensor simulation predicts, and beat the
unsmoothed model."""

import copy

import pytest
import torch
from torch import nn

from qlearn import PerTensor, QuantLinear, quantize_model
from qlearn.data.models import SENTENCES, embed, load_model
from qlearn.methods.smoothquant import default_pairs, smooth_model
from qlearn.methods.w8a8_sim import simulate_w8a8
from qlearn.training.calibrate import calibrate_activations

ALPHA = 0.7


@pytest.fixture(scope="module")
def minilm():
    model, tok = load_model()
    batch = tok(list(SENTENCES), padding=True, return_tensors="pt")
    return model, tok, batch


def _pairs(model):
    fc2 = [n for n, m in model.named_modules()
           if type(m) is nn.Linear and n.endswith(".output.dense") and ".attention." not in n]
    return default_pairs(model) + [(None, [n]) for n in fc2]


def _cosine(emb, ref):
    return float((emb * ref).sum(-1).mean())  # both L2-normalized


def _real_w8a8(model, batch):
    quantize_model(model, bits=8, activations=8, activation_granularity=PerTensor())
    calibrate_activations(model, [batch])
    return model


def test_real_static_w8a8_matches_the_simulation_and_beats_no_smoothing(minilm):
    model, tok, batch = minilm
    reference = embed(model, tok, SENTENCES)
    smoothed = copy.deepcopy(model)
    smooth_model(smoothed, [batch], alpha=ALPHA, pairs=_pairs(smoothed))
    with simulate_w8a8(smoothed, "per_tensor", bits=8, calibration=[batch]) as sim:
        simulated = embed(smoothed, tok, SENTENCES)
    real = _real_w8a8(smoothed, batch)
    layers = [m for m in real.modules() if isinstance(m, QuantLinear)]
    assert len(layers) == len(sim.layers) and all(m.static_activations and m.calibrated for m in layers)
    assert sum(hasattr(m, "smooth_input_scale") for m in layers) == sum(len(lins) for _, lins in _pairs(model))
    # the static scales are the simulation's, up to calibrating behind int8 rather than float weights
    scales = torch.stack([m.activation_scale.reshape(()) for m in layers])
    sim_scales = torch.stack([sim.act_qparams[n].scale.reshape(()) for n in sim.layers])
    torch.testing.assert_close(scales, sim_scales, rtol=0.05, atol=0)
    emb_real = embed(real, tok, SENTENCES)
    assert abs(_cosine(emb_real, reference) - _cosine(simulated, reference)) < 2e-3
    # with the simulation's own scales, the reference path is the simulation; the integer kernel differs by
    # float rounding, which flips a few codes at rounding boundaries and grows through the six blocks
    same = copy.deepcopy(real)
    modules = dict(same.named_modules())
    for name in sim.layers:
        modules[name].set_activation_scale(sim.act_qparams[name].scale)
    assert _cosine(embed(same, tok, SENTENCES), simulated) > 0.999
    for name in sim.layers:
        modules[name].kernel = "reference"
    assert _cosine(embed(same, tok, SENTENCES), simulated) > 0.99999

    plain = _real_w8a8(copy.deepcopy(model), batch)
    assert _cosine(embed(plain, tok, SENTENCES), reference) < _cosine(emb_real, reference) - 0.005


def test_a_method_that_would_drop_the_smoothing_is_refused(minilm):
    model, _, batch = minilm
    smoothed = copy.deepcopy(model)
    smooth_model(smoothed, [batch], alpha=0.5)
    state = {k: v.clone() for k, v in smoothed.state_dict().items()}
    with pytest.raises(ValueError, match="SmoothQuant"):
        quantize_model(smoothed, bits=8, method="llm_int8")
    assert all(torch.equal(v, state[k]) for k, v in smoothed.state_dict().items())
