import pytest
import torch
from torch import nn

from qlearn.inference.block_inputs import BlockInputs, block_chain
from qlearn.inference.capture import capture_inputs
from qlearn.inference.targets import block_prefix, blocks


def _tiny_llama(seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config).eval()


def _batches():
    torch.manual_seed(1)
    padded = {"input_ids": torch.randint(0, 64, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    padded["attention_mask"][1, :4] = 0  # left padding on the second row
    return [padded, {"input_ids": torch.randint(0, 64, (1, 12))}]


def _groups(model):
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]
    return blocks(names)


def test_each_block_alone_sees_what_the_whole_model_feeds_it():
    model, batches = _tiny_llama(), _batches()
    groups = _groups(model)
    chain = block_chain(model, groups)
    assert chain is not None and len(chain) == 3
    cached = BlockInputs(model, chain, batches)
    for index, group in enumerate(groups):
        X = cached.capture(index, group, block_prefix(group[0]))
        reference = capture_inputs(model, group, batches)
        for name in group:
            assert X[name].shape == reference[name].shape == (2 * 9 - 4 + 12, X[name].shape[1])  # padding dropped
            torch.testing.assert_close(X[name], reference[name], rtol=1e-5, atol=1e-5)
        cached.advance(index)


def test_capture_drops_padding_rows():
    model = nn.Sequential(nn.Linear(4, 4))
    model.forward = lambda input_ids, attention_mask: model[0](input_ids)
    x = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    X = capture_inputs(model, ["0"], [{"input_ids": x, "attention_mask": mask}])
    torch.testing.assert_close(X["0"], torch.cat([x[0], x[1, 2:]]))


def test_no_chain_where_blocks_are_not_consecutive_list_children():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    assert block_chain(model, [["0"], ["2"]]) is None  # each "block" is a Linear in a Sequential
    llama = _tiny_llama()
    groups = _groups(llama)
    assert len(block_chain(llama, [groups[0], groups[2]])) == 1  # layers 0 and 2 do not feed each other
    assert len(block_chain(llama, groups + [["lm_head"]])) == 3  # the head after the layers is not chained


def test_sequential_gptq_through_the_chain_beats_rtn():
    import qlearn.methods  # noqa: F401
    from qlearn import quantize_model
    from qlearn.core.granularity import PerGroup

    torch.manual_seed(2)
    data = [{"input_ids": torch.randint(0, 64, (4, 32))} for _ in range(4)]
    test = torch.randint(0, 64, (4, 32))
    with torch.no_grad():
        reference = _tiny_llama()(test).logits
    errors = {}
    for method, options in (("rtn", {"symmetric": False}), ("gptq", {"act_order": True})):
        model = _tiny_llama()
        quantize_model(model, method=method, bits=3, granularity=PerGroup(16), calibration=data, **options)
        with torch.no_grad():
            errors[method] = float((model(test).logits - reference).square().mean())
    assert errors["gptq"] < errors["rtn"]
