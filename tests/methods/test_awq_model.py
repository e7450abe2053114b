"""AWQ at model level: the fold pairs found from names keep the float model's outputs; quantize_model end to end."""

import pytest
import torch
from torch import nn

from qlearn import PerGroup, QuantLinear, quantize_model
from qlearn.methods import folding
from qlearn.methods.awq import AWQLinear


def _llama(kv_heads=4, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _token_batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 96, (2, 16), generator=g)} for _ in range(n)]


@pytest.fixture(scope="module")
def minilm():
    from qlearn.data.models import load_model

    return load_model()


def _linears(model):
    return [n for n, m in model.named_modules() if type(m) is nn.Linear]


def _fold_random_scales(model, pairs, seed=0):
    g = torch.Generator().manual_seed(seed)
    for previous, layers in pairs:
        d = model.get_submodule(layers[0]).in_features
        s = torch.exp(torch.randn(d, generator=g))  # positive, spread over about e^+-2
        with torch.no_grad():
            folding.fold(model, previous, layers, s)


def test_llama_pairs_found_from_names_and_folding_keeps_logits():
    model = _llama()
    pairs = folding.find_pairs(model, _linears(model))
    found = {(p.split(".")[-1], tuple(l.split(".")[-1] for l in ls)) for p, ls in pairs}
    assert found == {("input_layernorm", ("q_proj", "k_proj", "v_proj")), ("post_attention_layernorm",
                     ("gate_proj", "up_proj")), ("v_proj", ("o_proj",)), ("up_proj", ("down_proj",))}
    assert len(pairs) == 4 * 2
    ids = _token_batches(1)[0]["input_ids"]
    with torch.no_grad():
        before = model(ids).logits
        _fold_random_scales(model, pairs)
        after = model(ids).logits
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4)


def test_grouped_query_attention_does_not_fold_v_into_o():
    model = _llama(kv_heads=2)
    pairs = folding.find_pairs(model, _linears(model))
    assert not any(p.endswith("v_proj") for p, _ in pairs) and len(pairs) == 3 * 2


def test_minilm_folds_value_into_attention_output_and_keeps_embeddings(minilm):
    model, tokenizer = minilm
    import copy

    model = copy.deepcopy(model)
    pairs = folding.find_pairs(model, _linears(model))
    assert [(p.split(".", 3)[-1], [l.split(".", 3)[-1] for l in ls]) for p, ls in pairs] == \
        [("attention.self.value", ["attention.output.dense"])] * 6
    batch = tokenizer(["A cat sits on the mat.", "Stocks fell sharply today."], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).last_hidden_state
        _fold_random_scales(model, pairs)
        after = model(**batch).last_hidden_state
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4)


def test_awq_on_tiny_llama_folds_where_it_can_and_beats_rtn():
    batches, test_ids = _token_batches(4), _token_batches(1, seed=7)[0]["input_ids"]
    reference_model, rtn_model, model = _llama(), _llama(), _llama()
    with torch.no_grad():
        reference = reference_model(test_ids).logits
    quantize_model(rtn_model, bits=3, granularity=PerGroup(32), method="rtn", symmetric=False)
    report = quantize_model(model, bits=3, granularity=PerGroup(32), method="awq", calibration=batches)
    assert isinstance(model.model.layers[0].self_attn.q_proj, QuantLinear)
    assert not isinstance(model.model.layers[0].self_attn.q_proj, AWQLinear)
    assert isinstance(model.lm_head, AWQLinear)  # nothing before the head feeds only the head
    assert "folded into model.layers.1.mlp.up_proj" in report.notes["model.layers.1.mlp.down_proj"]
    assert "kept on the layer" in report.notes["lm_head"]
    with torch.no_grad():
        err_awq = (model(test_ids).logits - reference).norm()
        err_rtn = (rtn_model(test_ids).logits - reference).norm()
    assert err_awq < err_rtn


def test_a_fold_that_changes_the_model_is_refused_and_undone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    x = torch.randn(8, 32)
    before = model(x).detach()
    with pytest.raises(ValueError, match="changed the model's output"):
        quantize_model(model, bits=4, granularity=PerGroup(32), method="awq", calibration=[x], pairs=[("0", ["2"])])
    assert all(type(m) in (nn.Linear, nn.GELU) for m in model)
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("pairs,err", [("0", TypeError), ([("0", "2")], TypeError), ([("1", ["2"])], ValueError),
                                       ([("0", ["9"])], ValueError)],
                         ids=["not-a-list", "layers-str", "no-weight", "unknown-layer"])
def test_bad_pairs(pairs, err):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    with pytest.raises(err):
        quantize_model(model, bits=4, granularity=PerGroup(32), method="awq", calibration=[torch.randn(8, 32)],
                       pairs=pairs)
