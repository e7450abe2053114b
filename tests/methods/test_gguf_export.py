"""export_gguf: a Llama model written as GGUF reloads in transformers (gguf-py's reader) with the same weights.

A tiny random Llama (vocab 64) keeps it fast; its tokenizer metadata comes from a small GGUF written here.
"""

import copy

import gguf
import numpy as np
import pytest
import torch
import transformers

from qlearn.core.granularity import PerChannel, PerGroup
from qlearn.inference.quantize_model import quantize_model
from qlearn.methods.ggml_quants import dequantize_blocks, quantize_blocks
from qlearn.methods.gguf_export import FILE_TYPES, export_gguf, permute_for_gguf

VOCAB = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, path of a GGUF holding only a name and a 64-token BPE tokenizer's metadata)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                      max_position_embeddings=128, rms_norm_eps=1e-5)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)  # RMSNorm weights that are not all ones
    source = tmp_path_factory.mktemp("gguf") / "tokenizer.gguf"
    writer = gguf.GGUFWriter(str(source), "llama")
    writer.add_name("tiny test llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<|endoftext|>"] + [chr(ord("a") + i % 26) * (1 + i // 26) for i in range(VOCAB - 1)])
    writer.add_token_types([3] + [1] * (VOCAB - 1))
    writer.add_token_merges(["a a", "b b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model, source


def _expected(name, W, file_type):
    """What the file should hold for one weight: F32 as is, else its blocks' dequantized values."""
    if W.ndim == 1 or file_type == "F32":
        return W
    if file_type == "F16":
        return W.half().float()
    tied = name in ("model.embed_tokens.weight", "lm_head.weight")  # one tensor in the file, Q8_0 beside 4-bit
    t = "Q8_0" if tied and file_type in ("Q4_0", "Q4_1") else file_type
    return dequantize_blocks(quantize_blocks(W, t), t, W.shape)


@pytest.mark.parametrize("file_type", FILE_TYPES)
def test_export_reloads_in_transformers_with_the_same_weights(file_type, tiny, tmp_path):
    model, source = tiny
    path = export_gguf(model, None, tmp_path / "tiny.gguf", type=file_type, metadata_from=source)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    mine, theirs = model.state_dict(), reloaded.state_dict()
    for name, W in mine.items():  # q_proj and k_proj: transformers undoes the permutation, so rows line up
        assert torch.equal(theirs[name], _expected(name, W, file_type)), name
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["tokenizer.ggml.tokens"].contents()[:2] == ["<|endoftext|>", "a"]
    assert reader.fields["general.name"].contents() == "tiny test llama"  # copied with the tokenizer
    assert reader.fields["general.file_type"].contents() == {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7}[
        file_type]  # gguf.LlamaFileType: ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q4_1, MOSTLY_Q8_0
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied lm_head: token_embd serves both


def _fp16(t):
    return t.half().float()


@pytest.mark.parametrize("bits, granularity, symmetric, ggml_type", [
    (4, PerGroup(32), False, "Q4_1"), (3, PerGroup(64), False, "Q4_1"), (4, PerChannel(0), False, "Q4_1"),
    (5, PerGroup(32), False, "Q5_1"), (4, PerGroup(32), True, "Q4_0"), (8, PerGroup(32), True, "Q8_0"),
], ids=["4bit-g32", "3bit-g64", "4bit-row", "5bit-g32", "4bit-sym", "8bit-sym"])
def test_a_quantized_model_is_written_with_its_own_codes(bits, granularity, symmetric, ggml_type, tiny, tmp_path):
    """type=None: each group's scale and zero point become d = scale, m = scale (qmin - zero_point) in fp16."""
    model, source = tiny
    model = copy.deepcopy(model)
    quantize_model(model, bits=bits, granularity=granularity, symmetric=symmetric, method="rtn")
    path = export_gguf(model, None, tmp_path / "grid.gguf", type=None, metadata_from=source)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == types["blk.1.ffn_down.weight"] == ggml_type
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    theirs = reloaded.state_dict()
    layer = model.model.layers[1].mlp.down_proj  # (64, 128)
    qmin = -(2 ** (bits - 1))
    blocks = granularity.to_blocks(layer.codes().float())  # (out, in / g, g) or (out, in)
    u = (layer.codes().float() - qmin).reshape(blocks.shape)
    expected = _fp16(layer.scale) * u + _fp16(layer.scale * (qmin - layer.zero_point.float()))
    if symmetric:  # Q4_0 / Q8_0: r = d * q, no m
        expected = _fp16(layer.scale) * layer.codes().float().reshape(blocks.shape)
    assert torch.equal(theirs["model.layers.1.mlp.down_proj.weight"], expected.reshape(64, 128))
    W_hat = layer.dequantized_weight()  # the course's own values: only d and m's fp16 rounding differs
    assert (theirs["model.layers.1.mlp.down_proj.weight"] - W_hat).abs().max() <= 1e-3 * W_hat.abs().max()
    q_file = theirs["model.layers.0.self_attn.q_proj.weight"]  # rows back in Hugging Face order
    assert (q_file - model.model.layers[0].self_attn.q_proj.dequantized_weight()).abs().max() <= 1e-3


@pytest.mark.parametrize("bits, granularity, symmetric, match", [
    (4, PerGroup(16), False, "whole blocks of 32"), (8, PerGroup(32), False, "asymmetric 8-bit"),
], ids=["group-16", "asym-8bit"])
def test_a_grid_no_ggml_type_holds_is_refused(bits, granularity, symmetric, match, tiny, tmp_path):
    model = copy.deepcopy(tiny[0])
    quantize_model(model, bits=bits, granularity=granularity, symmetric=symmetric, method="rtn")
    with pytest.raises(ValueError, match=match):
        export_gguf(model, None, tmp_path / "x.gguf", type=None, metadata_from=tiny[1])
    with pytest.raises(ValueError, match="type=None"):
        export_gguf(model, None, tmp_path / "x.gguf", type="Q8_0", metadata_from=tiny[1])
    assert not (tmp_path / "x.gguf").exists()


def test_permute_interleaves_the_rotary_halves_of_each_head():
    W = torch.arange(8.0)[:, None].expand(8, 3)  # 2 heads of 4 rows: halves (0, 1 | 2, 3), (4, 5 | 6, 7)
    assert permute_for_gguf(W, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_bad_inputs_are_refused(tiny, tmp_path):
    model, source = tiny
    with pytest.raises(ValueError, match="Q4_1"):
        export_gguf(model, None, tmp_path / "x.gguf", type="Q4_K", metadata_from=source)
    with pytest.raises(ValueError, match="Llama architecture"):
        export_gguf(torch.nn.Linear(2, 2), None, tmp_path / "x.gguf", metadata_from=source)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        export_gguf("model", None, tmp_path / "x.gguf", metadata_from=source)


def test_a_different_tokenizer_is_refused(tiny, tmp_path):
    class Vocab:  # the one tokenizer method export_gguf reads, with the wrong tokens
        def __len__(self):
            return VOCAB

        def convert_ids_to_tokens(self, ids):
            return ["x"] * len(ids)

    with pytest.raises(ValueError, match="vocabulary"):
        export_gguf(tiny[0], Vocab(), tmp_path / "x.gguf", metadata_from=tiny[1])
    assert not np.any([p.name == "x.gguf" for p in tmp_path.iterdir()])
