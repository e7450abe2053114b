"""mixed_precision: block sensitivity (measured KL at one or several widths, by RTN or GPTQ, model left as it was),
the exact bit allocation within a byte budget (against brute force), and quantize_mixed giving each block its planned
width in the model's order. A tiny random Llama keeps it fast."""

import copy
import itertools

import pytest
import torch
import transformers

from qlearn.core.granularity import PerGroup
from qlearn.core.metrics import kl_divergence
from qlearn.inference.linear import QuantLinear
from qlearn.inference.quantize_model import quantize_model
from qlearn.methods import mixed_precision as mp
from qlearn.methods.rtn import quantize_weight as rtn_weight


class CharTokenizer:
    """Text -> one id per character (mod 64), the interface metrics and mixed_precision call."""

    def __call__(self, text, return_tensors=None):
        ids = [ord(c) % 64 for c in text]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}


TEXT = "the quick brown fox jumps over the lazy dog, and then it rests in the warm afternoon sun " * 2
CALIBRATION = [CharTokenizer()(TEXT[i:i + 64], return_tensors="pt")["input_ids"] for i in (0, 64)]  # 2 x (1, 64)


def snapshot(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model, before: dict) -> bool:
    """Every tensor of the model's state as it was in `before` (a snapshot)."""
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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
    before = snapshot(tiny)
    s2 = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=2, group_size=32)
    s8 = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=8, group_size=32)
    assert unchanged(tiny, before)
    assert all(0 <= s8[b] < s2[b] for b in s2)  # fewer bits, more damage
    # the oracle: metrics.kl_divergence on a copy with only block 1 rounded
    q = copy.deepcopy(tiny)
    for name in mp.decoder_blocks(q)["model.layers.1"]:
        layer = q.get_submodule(name)
        layer.weight.data = rtn_weight(layer.weight.data, bits=2, group_size=32).dequantize()
    expected = kl_divergence(tiny, q, CharTokenizer(), TEXT[:128], window=128, progress=False)
    assert s2["model.layers.1"] == pytest.approx(expected, rel=1e-6)


def test_several_widths_give_each_width_as_quantize_mixed_rounds_it(tiny):
    table = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=(2, 8), group_size=32)
    assert table == {b: {2: kl2, 8: mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=8, group_size=32)[b]}
                     for b, kl2 in mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=2, group_size=32).items()}
    # 8 bits is symmetric, as quantize_mixed (and Q8_0) rounds it
    q = copy.deepcopy(tiny)
    quantize_model(q, bits=8, granularity=PerGroup(32), symmetric=True,
                   exclude=[n for n in mp.decoder_blocks(q)["model.layers.0"]] + [n for n in mp.decoder_blocks(q)[
                       "model.layers.2"]])
    expected = kl_divergence(tiny, q, CharTokenizer(), TEXT[:128], window=128, progress=False)
    assert table["model.layers.1"][8] == pytest.approx(expected, rel=1e-5)


def test_sensitivity_by_gptq_is_the_kl_of_that_block_quantized_by_gptq_alone(tiny):
    before = snapshot(tiny)
    table = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=(3, 5), group_size=32, method="gptq",
                                 calibration=CALIBRATION)
    assert unchanged(tiny, before)
    assert all(type(m) is torch.nn.Linear for n, m in tiny.named_modules() if "proj" in n)  # put back
    blocks = mp.decoder_blocks(tiny)
    q = copy.deepcopy(tiny)
    quantize_model(q, bits=3, granularity=PerGroup(32), method="gptq", calibration=CALIBRATION,
                   exclude=blocks["model.layers.0"] + blocks["model.layers.1"])
    expected = kl_divergence(tiny, q, CharTokenizer(), TEXT[:128], window=128, progress=False)
    assert table["model.layers.2"][3] == pytest.approx(expected, rel=1e-5)
    rtn = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=3, group_size=32)
    assert all(table[b][3] != rtn[b] for b in blocks)  # GPTQ, not RTN, did the rounding


def test_per_linear_gptq_sensitivity_is_each_linear_quantized_by_gptq_alone(tiny):
    """Per-Linear blocks share one GPTQ call per decoder block and width; each number must still be the KL with that
    one Linear quantized alone (the oracle: quantize_model on it, everything else excluded)."""
    linears = [n for names in mp.decoder_blocks(tiny).values() for n in names]
    per_linear = {name: [name] for name in linears}
    before = snapshot(tiny)
    table = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=(3, 8), group_size=32, method="gptq",
                                 calibration=CALIBRATION, blocks=per_linear)
    assert list(table) == linears
    assert unchanged(tiny, before)
    assert all(type(tiny.get_submodule(n)) is torch.nn.Linear for n in linears)  # put back
    for name, bits in (("model.layers.1.self_attn.v_proj", 3), ("model.layers.2.mlp.down_proj", 8)):
        q = copy.deepcopy(tiny)
        quantize_model(q, bits=bits, granularity=PerGroup(32), method="gptq", calibration=CALIBRATION,
                       symmetric=bits >= 6, exclude=[n for n in linears if n != name] + ["lm_head"])
        expected = kl_divergence(tiny, q, CharTokenizer(), TEXT[:128], window=128, progress=False)
        assert table[name][bits] == pytest.approx(expected, rel=1e-5)
    assert len({kl[3] for kl in table.values()}) == len(linears)  # each Linear measured, not its block


def test_block_bytes_are_the_gguf_block_bytes_of_each_width(tiny):
    costs = mp.block_bytes(tiny)
    weights = sum(tiny.get_submodule(n).weight.numel() for n in mp.decoder_blocks(tiny)["model.layers.0"])
    assert {b: costs["model.layers.0"][b] * 8 / weights for b in (4, 5, 8)} == {4: 5.0, 5: 6.0, 8: 8.5}


def _plans(blocks, options):
    return [dict(zip(blocks, combo)) for combo in itertools.product(options, repeat=len(blocks))]


def _best(table, costs, budget):
    """Brute force: the least summed KL over every plan that fits."""
    blocks = list(costs)
    return min(sum(table[k][b] for k, b in p.items()) for p in _plans(blocks, sorted(costs[blocks[0]]))
               if sum(costs[k][b] for k, b in p.items()) <= budget)


def test_allocation_is_the_best_plan_on_small_cases():
    blocks = ["a", "b", "c", "d"]
    sensitivity = {"a": 5.0, "b": 0.01, "c": 0.5, "d": 0.05}
    costs = {k: {b: 100 * b for b in (2, 3, 4, 5)} for k in blocks}
    table = {k: {b: mp.estimated_kl(s, 3, b) for b in (2, 3, 4, 5)} for k, s in sensitivity.items()}
    for budget in (800, 1100, 1400, 1600, 2000):
        plan = mp.allocate_bits(sensitivity, costs, budget, measured_bits=3)
        assert sum(costs[k][b] for k, b in plan.items()) <= budget
        assert sum(table[k][b] for k, b in plan.items()) == pytest.approx(_best(table, costs, budget))
    plan = mp.allocate_bits(sensitivity, costs, 1400, measured_bits=3)
    assert plan["a"] > plan["b"]  # the sensitive block gets more bits


def test_measured_tables_that_a_greedy_choice_gets_wrong_are_solved_exactly():
    # GGUF-like costs (Q4_1, Q5_1, Q8_0 per 32 weights) and measured KLs that fall unevenly with the bits: raising
    # the block with the best KL per byte first (greedy) is not optimal on such tables; the allocation must be.
    g = torch.Generator().manual_seed(0)
    costs = {f"b{i}": {4: 20, 5: 24, 8: 34} for i in range(6)}
    for _ in range(30):
        table = {}
        for k in costs:
            kl4, r5, r8 = (torch.rand(3, generator=g) * torch.tensor([1.0, 0.5, 0.2])).tolist()
            table[k] = {4: kl4, 5: kl4 * r5, 8: kl4 * r5 * r8}
        for budget in (120, 130, 144, 150, 170, 204):
            plan = mp.allocate_bits(table, costs, budget)
            assert sum(costs[k][b] for k, b in plan.items()) <= budget
            assert sum(table[k][b] for k, b in plan.items()) == pytest.approx(_best(table, costs, budget), abs=1e-12)


def test_allocation_at_the_uniform_budget_never_estimates_worse_than_uniform():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        sensitivity = {f"b{i}": float(v) for i, v in enumerate(torch.rand(8, generator=g) ** 4)}
        costs = {k: {b: 1000 * b + 64 for b in (2, 3, 4, 5)} for k in sensitivity}
        uniform = sum(c[4] for c in costs.values())
        plan = mp.allocate_bits(sensitivity, costs, uniform, measured_bits=3)
        mixed_kl = sum(mp.estimated_kl(s, 3, plan[k]) for k, s in sensitivity.items())
        assert mixed_kl <= sum(mp.estimated_kl(s, 3, 4) for s in sensitivity.values()) + 1e-12


def test_a_budget_finer_than_the_table_still_fits():
    # byte counts with no common divisor: the table coarsens its step, and the plan must still fit the budget
    costs = {f"b{i}": {4: 2_000_003 + i, 5: 2_400_007 + 3 * i, 8: 3_400_019 + 7 * i} for i in range(5)}
    table = {k: {4: 1.0 + i, 5: 0.2 + i / 5, 8: 0.01} for i, k in enumerate(costs)}
    budget = sum(c[5] for c in costs.values()) + 12_345
    plan = mp.allocate_bits(table, costs, budget)
    assert sum(costs[k][b] for k, b in plan.items()) <= budget
    assert sum(table[k][b] for k, b in plan.items()) <= sum(table[k][5] for k in costs)


def test_quantize_mixed_gives_each_block_its_width(tiny):
    q = copy.deepcopy(tiny)
    plan = {"model.layers.0": 5, "model.layers.1": 8, "model.layers.2": 4}
    mp.quantize_mixed(q, plan, method="rtn", group_size=32)
    for block, names in mp.decoder_blocks(tiny).items():
        for name in names:
            layer = q.get_submodule(name)
            assert isinstance(layer, QuantLinear) and layer.bits == plan[block]
            assert layer.symmetric == (plan[block] == 8)  # Q8_0 is symmetric
    assert type(q.lm_head) is torch.nn.Linear


def test_quantize_mixed_runs_blocks_in_order_as_one_sequential_pass(tiny):
    # GPTQ calibrates each block on the inputs the blocks before it give once quantized; a plan that goes
    # 4, 8, 4 must give block 1 the inputs of a 4-bit block 0, as quantizing block by block in order does.
    plan = {"model.layers.0": 4, "model.layers.1": 8, "model.layers.2": 4}
    q = copy.deepcopy(tiny)
    mp.quantize_mixed(q, plan, method="gptq", group_size=32, calibration=CALIBRATION)
    expected = copy.deepcopy(tiny)
    blocks = mp.decoder_blocks(tiny)
    for block, bits in plan.items():
        quantize_model(expected, bits=bits, granularity=PerGroup(32), method="gptq", calibration=CALIBRATION,
                       symmetric=bits >= 6, exclude=[n for b, ns in blocks.items() if b != block for n in ns])
    for name in (n for ns in blocks.values() for n in ns):
        got, want = q.get_submodule(name), expected.get_submodule(name)
        assert torch.equal(got.dequantized_weight(), want.dequantized_weight())


def test_per_linear_widths_in_one_decoder_block_each_see_what_a_uniform_pass_shows(tiny):
    # down_proj at 8 bits beside 4-bit neighbours must come out as in a block all at 8 bits: calibrated on the
    # block's inputs with its neighbours float (one uniform pass), not on the 4-bit gate/up quantized before it.
    blocks = mp.decoder_blocks(tiny)
    per_linear = {name: [name] for names in blocks.values() for name in names}
    target = "model.layers.1.mlp.down_proj"
    models = {}
    for case, eight in (("one", {target}), ("block", set(blocks["model.layers.1"]))):
        models[case] = copy.deepcopy(tiny)
        plan = {name: 8 if name in eight else 4 for name in per_linear}
        mp.quantize_mixed(models[case], plan, method="gptq", group_size=32, calibration=CALIBRATION,
                          blocks=per_linear)
        assert all(models[case].get_submodule(n).bits == plan[n] for n in per_linear)
    got, want = (models[case].get_submodule(target).dequantized_weight() for case in ("one", "block"))
    assert torch.equal(got, want)
    uniform = copy.deepcopy(tiny)  # and a plan at one width is exactly the uniform pass
    quantize_model(uniform, bits=4, granularity=PerGroup(32), method="gptq", calibration=CALIBRATION,
                   exclude=["lm_head"])
    same = copy.deepcopy(tiny)
    mp.quantize_mixed(same, {n: 4 for n in per_linear}, method="gptq", group_size=32, calibration=CALIBRATION,
                      blocks=per_linear)
    assert all(torch.equal(uniform.get_submodule(n).dequantized_weight(), same.get_submodule(n).dequantized_weight())
               for n in per_linear)


def test_awq_sensitivity_undoes_its_folds_and_is_the_kl_of_that_block_by_awq_alone(tiny):
    # AWQ folds its scales into the norms before each block: the measurement must put them back
    before = snapshot(tiny)
    table = mp.block_sensitivity(tiny, CharTokenizer(), TEXT, bits=(3, 4), group_size=32, method="awq",
                                 calibration=CALIBRATION)
    assert unchanged(tiny, before)
    blocks = mp.decoder_blocks(tiny)
    q = copy.deepcopy(tiny)
    quantize_model(q, bits=4, granularity=PerGroup(32), method="awq", calibration=CALIBRATION,
                   exclude=blocks["model.layers.0"] + blocks["model.layers.2"] + ["lm_head"])
    expected = kl_divergence(tiny, q, CharTokenizer(), TEXT[:128], window=128, progress=False)
    assert table["model.layers.1"][4] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: mp.allocate_bits({"a": 1.0}, {"a": {3: 10}}, 5), ValueError, "below the smallest"),
    (lambda m: mp.allocate_bits({"a": float("nan")}, {"a": {3: 10}}, 50), ValueError, "finite KL"),
    (lambda m: mp.allocate_bits({"a": 1.0}, {"b": {3: 10}}, 50), ValueError, "same blocks"),
    (lambda m: mp.quantize_mixed(m, {"model.layers.9": 4}, method="rtn"), ValueError, "unknown"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), "", bits=3), ValueError, "non-empty"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, blocks={"x": ["model.norm"]}), ValueError, "nn.Linear"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, bits=()), ValueError, "non-empty tuple"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, method="gptq"), ValueError, "calibration"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, calibration=[TEXT]), ValueError, "rtn"),
    (lambda m: mp.allocate_bits({"a": {4: 1.0}}, {"a": {4: 10, 5: 12}}, 50), ValueError, "every width"),
    (lambda m: mp.allocate_bits({"a": {4: 1.0, 5: -1.0}}, {"a": {4: 10, 5: 12}}, 50), ValueError, "finite KL"),
    (lambda m: mp.allocate_bits({"a": 1.0}, {"a": {4: 10.5}}, 50), ValueError, "ints >= 0"),
    (lambda m: mp.block_bytes(m, blocks={"a": ["model.layers.0.mlp.up_proj"] * 2}), ValueError, "one block only"),
    (lambda m: mp.quantize_mixed(m, {"a": 4}, method="rtn", blocks={"a": ["model.layers.0.mlp.up_proj"],
                                                                     "b": ["model.layers.0.mlp.up_proj"]}),
     ValueError, "one block only"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, blocks={"head": ["lm_head"]}), ValueError, "tied"),
    (lambda m: mp.block_bytes(m, blocks={"a": "model.layers.0.mlp.up_proj"}), TypeError, "list of Linear names"),
    (lambda m: mp.quantize_mixed(m, {"model.layers.0": 4}, method="gptq"), ValueError, "calibration"),
    (lambda m: mp.block_sensitivity(m, CharTokenizer(), TEXT, bits={4, 5}), TypeError, "tuple of widths"),
], ids=["budget", "nan", "blocks", "plan", "text", "not-linear", "no-widths", "gptq-uncalibrated", "rtn-calibrated",
        "width-unmeasured", "negative", "float-bytes", "listed-twice", "overlapping", "tied", "names-a-string",
        "mixed-uncalibrated", "bits-a-set"])
def test_bad_inputs_are_refused(tiny, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny)
