"""prune_model: the references' sequential model-level loop, ported, gives the same masks and weights; sparsity 0 is
the identity (and GPTQ in SparseGPT's joint mode); the report names what stayed dense.

Oracle: the model-level loop of locuslab/wanda lib/prune.py prune_wanda and of IST-DASLab/sparsegpt opt.py
opt_sequential (catch the first decoder layer's inputs; per layer: hook every Linear, run the layer on every batch,
prune each Linear on what it saw, run the pruned layer again to get the next layer's inputs), ported below around
the per-layer steps ported in test_wanda.py and test_sparsegpt.py.
"""

import copy

import pytest
import torch
from torch import nn

from qlearn.compression.prune import magnitude_mask, nm_mask
from qlearn.core.granularity import PerGroup
from qlearn.inference.capture import capture_inputs
from qlearn.inference.quantize_model import quantize_model
from qlearn.methods import gptq, sparsegpt
from qlearn.methods.pruning import PruneReport, magnitude_weight, prune_model

from .test_sparsegpt import reference_fasterprune
from .test_wanda import reference_wanda


def tiny_llama(seed=0, hidden=32, layers=2):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden,
                                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(config).eval()


def batches(n=4, seq=48, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (1, seq), generator=g) for _ in range(n)]


def linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}


# ---- the references' model-level loop, ported ----

class _Catcher(Exception):
    pass


@torch.no_grad()
def reference_sequential(model, data, prune_layer):
    """opt_sequential / prune_wanda: layer by layer on the cached inputs, each layer pruned before it feeds the next."""
    layers = model.model.layers
    cache = []

    def catch(module, args, kwargs):
        cache.append((args[0] if args else kwargs["hidden_states"],
                      {k: v for k, v in kwargs.items() if k not in ("hidden_states", "cache", "past_key_values",
                                                                    "past_key_value", "use_cache")}))
        raise _Catcher

    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for ids in data:
        try:
            model(ids)
        except _Catcher:
            pass
    handle.remove()
    for layer in layers:
        subset = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        seen = {n: [] for n in subset}
        handles = [m.register_forward_hook(lambda mod, inp, out, n=n: seen[n].append(inp[0].detach()))
                   for n, m in subset.items()]
        for hidden, kwargs in cache:
            layer(hidden, **kwargs)
        for h in handles:
            h.remove()
        for n, m in subset.items():
            m.weight.copy_(prune_layer(m.weight.detach(), seen[n]))
        cache = [(out[0] if isinstance(out, tuple) else out, kwargs)
                 for out, kwargs in ((layer(hidden, **kwargs), kwargs) for hidden, kwargs in cache)]
    return model


def wanda_layer(sparsity, pattern):
    n, m = (0, 0) if pattern is None else map(int, pattern.split(":"))
    return lambda W, seen: reference_wanda(W, seen, sparsity, n, m)[0]


def sparsegpt_layer(sparsity, pattern, bits=None, block_size=128):
    n, m = (0, 0) if pattern is None else map(int, pattern.split(":"))

    def prune(W, seen):
        H = gptq.hessian(torch.cat([s.reshape(-1, s.shape[-1]) for s in seen]))  # (in, in): as add_batch, up to scale
        return reference_fasterprune(W, H, sparsity, n, m, block_size, bits=bits,
                                     Hinv=gptq.inverse_hessian_factor(H, 0.01))[0]
    return prune


CASES = [("wanda", 0.5, None), ("wanda", 0.5, "2:4"), ("wanda", 0.3, None), ("sparsegpt", 0.5, None),
         ("sparsegpt", 0.5, "2:4"), ("sparsegpt", 0.5, "4:8")]


@pytest.mark.parametrize("method,sparsity,pattern", CASES, ids=[f"{c[0]}-{c[2] or c[1]}" for c in CASES])
def test_model_level_equals_the_references_sequential_loop(method, sparsity, pattern):
    model, data = tiny_llama(), batches()
    reference = reference_sequential(copy.deepcopy(model), data, wanda_layer(sparsity, pattern) if method == "wanda"
                                     else sparsegpt_layer(sparsity, pattern))
    options = {"mask": "block"} if method == "sparsegpt" else {}  # the reference's per-block threshold
    report = prune_model(model, method=method, sparsity=sparsity, pattern=pattern, calibration=data, **options)
    ours, theirs = linears(model), linears(reference)
    assert set(report.sparsity) == set(ours)
    for name in ours:
        assert torch.equal(ours[name].weight, theirs[name].weight), name
        assert torch.equal(report.masks[name], ours[name].weight != 0), name


def test_block_zero_sees_the_dense_inputs_and_block_one_the_pruned_ones():
    """Sequential: block 1 is pruned on block 0's pruned outputs, not on the dense model's."""
    model, data = tiny_llama(), batches()
    first, last = "model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"
    dense = capture_inputs(model, [first, last], data)
    W = {n: model.get_submodule(n).weight.detach().clone() for n in (first, last)}
    prune_model(model, method="sparsegpt", calibration=data)
    assert torch.equal(model.get_submodule(first).weight, sparsegpt.prune_weight(W[first], dense[first]))
    assert not torch.equal(model.get_submodule(last).weight, sparsegpt.prune_weight(W[last], dense[last]))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_sparsity_zero_leaves_the_model_unchanged(method):
    model, data = tiny_llama(), batches()
    before = {n: m.weight.clone() for n, m in linears(model).items()}
    report = prune_model(model, method=method, sparsity=0.0, calibration=data)
    assert all(torch.equal(m.weight, before[n]) for n, m in linears(model).items())
    assert report.total == 0.0


def test_joint_mode_at_sparsity_zero_equals_gptq_through_the_model():
    model, data = tiny_llama(), batches()
    quantized = copy.deepcopy(model)
    report = quantize_model(quantized, method="gptq", bits=4, granularity=PerGroup(16), calibration=data,
                            exclude="lm_head", block_size=16)
    prune_model(model, method="sparsegpt", sparsity=0.0, bits=4, group_size=16, calibration=data, block_size=16)
    for name, linear in linears(model).items():
        assert torch.equal(linear.weight, report.layers[name].dequantized_weight()), name


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", [None, "2:4"], ids=["50%", "2:4"])
def test_every_layer_has_its_exact_sparsity_and_the_tied_head_stays_dense(method, pattern):
    model, data = tiny_llama(), batches()
    head = model.lm_head.weight.clone()
    report = prune_model(model, method=method, pattern=pattern, calibration=data)
    assert isinstance(report, PruneReport) and report.pattern == pattern
    assert "lm_head" in report.skipped and "tied" in report.skipped["lm_head"] and "dense" in report.skipped["lm_head"]
    assert torch.equal(model.lm_head.weight, head)
    for name, linear in linears(model).items():
        zeros = linear.weight == 0  # (out, in)
        if pattern == "2:4":
            assert (zeros.reshape(zeros.shape[0], -1, 4).sum(2) == 2).all(), name
        elif method == "magnitude":
            assert int(zeros.sum()) == zeros.numel() // 2, name
        else:
            assert (zeros.sum(1) == zeros.shape[1] // 2).all(), name
        assert report.sparsity[name] == pytest.approx(0.5)
    assert report.total == pytest.approx(0.5) and "left dense" in report.summary()


def test_magnitude_weight_is_compressions_magnitude_pruning():
    W = torch.randn(16, 64)
    assert torch.equal(magnitude_weight(W, 0.6), W * magnitude_mask(W, 0.6))
    assert torch.equal(magnitude_weight(W, pattern="4:8"), W * nm_mask(W.abs(), 4, 8))


def test_magnitude_needs_no_data_and_wanda_does():
    prune_model(tiny_llama(), method="magnitude")
    with pytest.raises(ValueError, match="needs calibration"):
        prune_model(tiny_llama(), method="wanda")


def test_a_layer_the_pattern_cannot_split_is_skipped_and_said():
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    report = prune_model(model, method="wanda", pattern="4:8", calibration=[torch.randn(32, 8)])
    assert set(report.sparsity) == {"0"} and "not a multiple of 8" in report.skipped["2"]


BAD = [
    ("method", dict(method="obs"), ValueError, "method must be one of"),
    ("sparsity", dict(sparsity=1.0), ValueError, "sparsity"),
    ("pattern", dict(pattern="1:4"), ValueError, "pattern must be one of"),
    ("pattern-sparsity", dict(pattern="2:4", sparsity=0.3), ValueError, "removes 2 of every 4"),
    ("bits-wanda", dict(method="wanda", bits=4), ValueError, "joint mode"),
    ("option", dict(method="wanda", block_size=16), TypeError, "unknown options"),
    ("calibration", dict(calibration=torch.zeros(1, 4, dtype=torch.long)), TypeError, "calibration"),
    ("model", dict(model="llama"), TypeError, "model must be"),
]


@pytest.mark.parametrize("case,kwargs,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused(case, kwargs, error, match):
    args = dict(model=tiny_llama(), calibration=batches(1)) | kwargs
    with pytest.raises(error, match=match):
        prune_model(**args)
