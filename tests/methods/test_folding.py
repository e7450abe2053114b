"""methods.folding: pairs found from names, folding keeps the function and undoes exactly, the output check's
tolerance follows the model's dtype (bf16 folds pass, a fold into the wrong module fails in every dtype)."""

import pytest
import torch

from qlearn.methods import folding


def tiny_llama(dtype=torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval().to(dtype)


def linears(model):
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_folding_every_pair_keeps_the_output_within_the_dtypes_tolerance_and_undoes_exactly(dtype):
    model = tiny_llama(dtype)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    state_before = {k: t.clone() for k, t in model.state_dict().items()}
    with torch.no_grad():
        before = model(ids).logits
        state = folding.FoldState()
        g = torch.Generator().manual_seed(2)
        for previous, layers in folding.find_pairs(model, linears(model)):
            s = torch.exp(torch.randn(model.get_submodule(layers[0]).in_features, generator=g))
            folding.fold(model, previous, layers, s, state)
        folding.check_unchanged(before, model(ids).logits, dtype, "folding")  # raises if beyond the tolerance
        state.undo()
    assert all(torch.equal(t, model.state_dict()[k]) for k, t in state_before.items())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_a_fold_into_a_module_that_feeds_more_than_its_layers_is_caught(dtype):
    model = tiny_llama(dtype)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids).logits
        s = torch.exp(torch.randn(32, generator=torch.Generator().manual_seed(3)))
        # wrong: the norm also feeds k_proj and v_proj, which do not take s
        folding.fold(model, "model.layers.0.input_layernorm", ["model.layers.0.self_attn.q_proj"], s)
        with pytest.raises(ValueError, match="folding changed the model's output"):
            folding.check_unchanged(before, model(ids).logits, dtype, "folding")


def test_default_pairs_and_check_pairs():
    model = tiny_llama()
    pairs = folding.default_pairs(model)
    assert [p for p, _ in pairs] == [f"model.layers.{i}.{n}" for i in range(2)
                                     for n in ("input_layernorm", "post_attention_layernorm")]
    assert folding.check_pairs(model, pairs, allow_none=False) == pairs
    with pytest.raises(ValueError, match="a previous module is needed"):
        folding.check_pairs(model, [(None, ["model.layers.0.mlp.up_proj"])], allow_none=False)
    with pytest.raises(ValueError, match="two pairs"):
        folding.check_pairs(model, [pairs[0], pairs[0]], allow_none=False)
    with pytest.raises(ValueError, match="width"):
        folding.check_pairs(model, [("model.layers.0.input_layernorm", ["model.layers.0.mlp.down_proj"])],
                            allow_none=False)
