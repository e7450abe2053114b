"""llama_cpp: llama.cpp's scores equal the course's on the same weights, llama-quantize's k-quants fall back on
576-column rows, its blocks decode as gguf-py and ggml_quants decode them, and its Q4_K error is what ours is.

Skipped with a reason when llama-cpp-python is not built (`make llama-cpp`). The oracle everywhere is the course's
own path on the same weights: the bundled Q4_1 SmolLM2 in transformers (dequantized exactly) against the same file
in llama.cpp.
"""

import math

import gguf
import numpy as np
import pytest
import torch

from qlearn.core import metrics
from qlearn.data.llm import course_text, load_llm, smollm2_gguf
from qlearn.methods import llama_cpp
from qlearn.methods.ggml_quants import dequantize_blocks, model_importance, quantize_blocks
from qlearn.methods.gguf_export import export_gguf

needs_llama = pytest.mark.skipif(not llama_cpp.available(), reason=llama_cpp.INSTALL_HINT)


@pytest.fixture(scope="module")
def smollm2():
    model, tokenizer = load_llm(progress=False)
    text = tokenizer.decode(tokenizer(course_text("eval"))["input_ids"][:97])  # 96 scored tokens
    return model, tokenizer, text


@pytest.fixture(scope="module")
def k_quants(smollm2, tmp_path_factory):
    """(F16 file, llama.cpp's Q4_K_M of it, the same with an importance matrix) of SmolLM2."""
    model, tokenizer, _ = smollm2
    folder = tmp_path_factory.mktemp("kq")
    f16 = export_gguf(model, tokenizer, folder / "f16.gguf", type="F16")
    ids = tokenizer(course_text("generated"), return_tensors="pt")["input_ids"][:, :256]  # (1, 256)
    names = [f"model.layers.{i}.mlp.down_proj" for i in range(30)]
    imatrix = {f"blk.{i}.ffn_down.weight": v for i, v in enumerate(model_importance(model, [ids], names).values())}
    plain = llama_cpp.quantize_gguf(f16, folder / "q4_k_m.gguf", "Q4_K_M")
    weighted = llama_cpp.quantize_gguf(f16, folder / "q4_k_m_imatrix.gguf", "Q4_K_M", imatrix=imatrix)
    return f16, plain, weighted


@needs_llama
def test_llama_cpp_scores_the_bundled_file_as_transformers_does(smollm2):
    model, tokenizer, text = smollm2
    ours = metrics.perplexity(model, tokenizer, text, window=48, progress=False)
    theirs = llama_cpp.perplexity(smollm2_gguf(), tokenizer, text, window=48)
    assert theirs == pytest.approx(ours, rel=0.01)  # llama.cpp rounds activations to Q8_1 for Q4_1 products
    kl = llama_cpp.kl_divergence(model, smollm2_gguf(), tokenizer, text, window=48)
    assert 0 <= kl < 0.02


@needs_llama
def test_k_quants_fall_back_on_576_wide_rows_and_decode_as_gguf_py(k_quants):
    _, plain, _ = k_quants
    reader = gguf.GGUFReader(str(plain))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert all(types[f"blk.{i}.ffn_down.weight"] in ("Q4_K", "Q6_K") for i in range(30))  # 1536 = 6 x 256
    assert all(not types[f"blk.{i}.attn_q.weight"].endswith("_K") for i in range(30))  # 576 = 2.25 x 256
    for t in reader.tensors:
        if t.tensor_type.name in ("Q4_K", "Q6_K") and t.name.startswith("blk.0."):
            data = np.array(t.data)
            shape = tuple(int(s) for s in reversed(t.shape))
            mine = dequantize_blocks(torch.from_numpy(data), t.tensor_type.name, shape)
            np.testing.assert_array_equal(mine.numpy(), gguf.quants.dequantize(data, t.tensor_type).reshape(shape))


@needs_llama
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "imatrix"])
def test_our_q4_k_error_is_within_5_percent_of_llama_cpp(k_quants, smollm2, weighted):
    f16, plain, with_imatrix = k_quants
    model, _, _ = smollm2
    reader = gguf.GGUFReader(str(with_imatrix if weighted else plain))
    checked = 0
    for t in reader.tensors:
        if t.tensor_type.name != "Q4_K" or not t.name.endswith("ffn_down.weight") or checked == 2:
            continue
        layer = int(t.name.split(".")[1])
        W = model.model.layers[layer].mlp.down_proj.weight.detach().half().float()  # what the F16 file holds
        theirs = dequantize_blocks(torch.from_numpy(np.array(t.data)), "Q4_K", tuple(W.shape))
        imatrix = None
        if weighted:
            ids = smollm2[1](course_text("generated"), return_tensors="pt")["input_ids"][:, :256]
            imatrix = model_importance(model, [ids], [f"model.layers.{layer}.mlp.down_proj"]).popitem()[1]
        ours = dequantize_blocks(quantize_blocks(W, "Q4_K", imatrix), "Q4_K", tuple(W.shape))
        err = [float((W - x).norm() / W.norm()) for x in (ours, theirs)]
        assert err[0] <= 1.05 * err[1], err
        checked += 1
    assert checked == 2


@needs_llama
def test_the_imatrix_changes_llama_cpp_blocks(k_quants):
    _, plain, weighted = k_quants
    a = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(plain)).tensors if "ffn_down" in t.name}
    b = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(weighted)).tensors if "ffn_down" in t.name}
    assert sum(not np.array_equal(a[n], b[n]) for n in a) >= 25


@needs_llama
def test_speed_and_chat_run(smollm2):
    _, tokenizer, _ = smollm2
    tps = llama_cpp.tokens_per_second(smollm2_gguf(), tokenizer("Plants need")["input_ids"], new_tokens=4, rounds=1)
    assert math.isfinite(tps) and tps > 0
    reply = llama_cpp.chat(smollm2_gguf(), "Name a colour.", max_tokens=8)
    assert isinstance(reply, str) and reply.strip()


@pytest.mark.parametrize("call, error, match", [
    (lambda: llama_cpp.quantize_gguf(smollm2_gguf(), "out.gguf", "Q9_K"), ValueError, "type"),
    (lambda: llama_cpp.quantize_gguf("missing.gguf", "out.gguf"), FileNotFoundError, "no GGUF"),
    (lambda: llama_cpp.quantize_gguf(smollm2_gguf(), "out.gguf", imatrix={"x": -torch.ones(4)}), ValueError, ">= 0"),
    (lambda: llama_cpp.quantize_gguf(smollm2_gguf(), "out.gguf", imatrix={"x": [1.0]}), TypeError, "1-D"),
    (lambda: llama_cpp.perplexity(smollm2_gguf(), None, "text"), TypeError, "tokenizer"),
    (lambda: llama_cpp.load(3), TypeError, "path"),
], ids=["type", "missing", "negative", "list", "tokenizer", "path"])
def test_bad_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()
