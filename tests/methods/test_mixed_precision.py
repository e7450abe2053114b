"""mixed_precision: block sensitivity (measured KL, model left as it was), the greedy bit allocation within a byte
budget, and quantize_mixed giving each block its planned width. A tiny random Llama keeps it fast."""

import itertools

import pytest
import torch
import transformers

from qlearn.core.metrics import kl_divergence
from qlearn.inference.linear import QuantLinear
from qlearn.methods import mixed_precision as mp
from qlearn.methods.rtn import quantize_weight as rtn_weight


class CharTokenizer:
    """Text -> one id per character (mod 64), the interface metrics and mixed_precision call."""

    def __call__(self, text, return_tensors=None):
        ids = [ord(c) % 64 for c in text]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}


TEXT = "the quick brown fox jumps over the lazy dog, and then it rests in the warm afternoon sun " * 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                      max_position_embeddings=256)
    return transformers.LlamaForCausalLM(config).eval()


def test_decoder_blocks_list_each_layer_linears(tiny):
    blocks = mp.decoder_blocks(tiny)
    assert list(blocks) == ["model.layers.0", "model.layers.1", "model.layers.2"]
    assert all(len(names) == 7 for names in blocks.values())  # q k v o gate up down; the tied lm_head is no block's


def test_sensitivity_is_the_kl_of_that_block_alone_and_leaves_the_model_as_it_was(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    s2 = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=2, group_size=32)
    s8 = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=8, group_size=32)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert all(0 <= s8[b] < s2[b] for b in s2)  # fewer bits, more damage
    # the oracle: metrics.kl_divergence on a copy with only block 1 rounded
    import copy
    q = copy.deepcopy(tiny)
    for name in mp.decoder_blocks(q)["model.layers.1"]:
        layer = q.get_submodule(name)
        layer.weight.data = rtn_weight(layer.weight.data, bits=2, group_size=32).dequantize()
    expected = kl_divergence(tiny, q, CharTokenizer(), TEXT[:128], window=128, progress=False)
    assert s2["model.layers.1"] == pytest.approx(expected, rel=1e-6)


def test_block_bytes_are_the_gguf_block_bytes_of_each_width(tiny):
    costs = mp.block_bytes(tiny)
    weights = sum(tiny.get_submodule(n).weight.numel() for n in mp.decoder_blocks(tiny)["model.layers.0"])
    assert {b: costs["model.layers.0"][b] * 8 / weights for b in (4, 5, 8)} == {4: 5.0, 5: 6.0, 8: 8.5}


def _plans(blocks, options):
    return [dict(zip(blocks, combo)) for combo in itertools.product(options, repeat=len(blocks))]


def test_greedy_allocation_fits_the_budget_and_matches_the_best_plan_on_a_small_case():
    blocks = ["a", "b", "c", "d"]
    sensitivity = {"a": 5.0, "b": 0.01, "c": 0.5, "d": 0.05}
    costs = {k: {b: 100 * b for b in (2, 3, 4, 5)} for k in blocks}
    for budget in (800, 1100, 1400, 1600, 2000):
        plan = mp.allocate_bits(sensitivity, costs, budget)
        assert sum(costs[k][b] for k, b in plan.items()) <= budget
        total = sum(mp.estimated_kl(sensitivity[k], 3, b) for k, b in plan.items())
        best = min(sum(mp.estimated_kl(sensitivity[k], 3, b) for k, b in p.items())
                   for p in _plans(blocks, (2, 3, 4, 5)) if sum(costs[k][b] for k, b in p.items()) <= budget)
        assert total == pytest.approx(best)  # equal costs per bit: greedy is optimal here
    plan = mp.allocate_bits(sensitivity, costs, 1400)
    assert plan["a"] > plan["b"]  # the sensitive block gets more bits


def test_allocation_at_the_uniform_budget_never_estimates_worse_than_uniform():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        sensitivity = {f"b{i}": float(v) for i, v in enumerate(torch.rand(8, generator=g) ** 4)}
        costs = {k: {b: 1000 * b + 64 for b in (2, 3, 4, 5)} for k in sensitivity}
        uniform = sum(c[4] for c in costs.values())
        plan = mp.allocate_bits(sensitivity, costs, uniform)
        mixed_kl = sum(mp.estimated_kl(s, 3, plan[k]) for k, s in sensitivity.items())
        assert mixed_kl <= sum(mp.estimated_kl(s, 3, 4) for s in sensitivity.values()) + 1e-12


def test_quantize_mixed_gives_each_block_its_width(tiny):
    import copy
    q = copy.deepcopy(tiny)
    plan = {"model.layers.0": 5, "model.layers.1": 8, "model.layers.2": 4}
    mp.quantize_mixed(q, plan, method="rtn", group_size=32)
    for block, names in mp.decoder_blocks(tiny).items():
        for name in names:
            layer = q.get_submodule(name)
            assert isinstance(layer, QuantLinear) and layer.bits == plan[block]
            assert layer.symmetric == (plan[block] == 8)  # Q8_0 is symmetric
    assert type(q.lm_head) is torch.nn.Linear


@pytest.mark.parametrize("call, error, match", [
    (lambda m: mp.allocate_bits({"a": 1.0}, {"a": {3: 10}}, 5), ValueError, "below the smallest"),
    (lambda m: mp.allocate_bits({"a": float("nan")}, {"a": {3: 10}}, 50), ValueError, "finite KL"),
    (lambda m: mp.allocate_bits({"a": 1.0}, {"b": {3: 10}}, 50), ValueError, "same blocks"),
    (lambda m: mp.quantize_mixed(m, {"model.layers.9": 4}, method="rtn"), ValueError, "unknown"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), "", bits=3), ValueError, "non-empty"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, blocks={"x": ["model.norm"]}), ValueError, "nn.Linear"),
], ids=["budget", "nan", "blocks", "plan", "text", "not-linear"])
def test_bad_inputs_are_refused(tiny, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny)
