"""qlearn.methods.kv_cache: KIVI's quantized KV cache, its storage, its byte formula, and transformers' Cache API.

Most tests run a tiny random Llama (head_dim 16, 2 layers); the ones marked real_llm run SmolLM2-135M for its
real keys (converted once per test session into the session's model cache).
"""

import pytest
import torch
from transformers import DynamicCache, LlamaConfig

from qlearn.methods.kv_cache import QuantizedKVCache, kv_cache_bytes, quantize_kv

# ---- the tensor level: quantize_kv ----------------------------------------------------------------------


def keys_with_outliers(shape=(2, 3, 64, 16)) -> torch.Tensor:
    """Random keys (batch, heads, tokens, head_dim) whose channel 3 sits at +20 and channel 5 is 10x wider."""
    x = torch.randn(shape)
    x[..., 3] += 20.0
    x[..., 5] *= 10.0
    return x


def per_element(q, t: torch.Tensor, shape) -> torch.Tensor:
    """A per-group tensor (scale or minimum) of `q` broadcast back to the (..., T, D) layout of the data."""
    full = t.float().expand(*t.shape[:-1], q.group_size)  # (..., A, N, g)
    full = full.reshape(*full.shape[:-2], -1)  # (..., T, D) or (..., D, T)
    return full if q.granularity == "token" else full.transpose(-1, -2)


@pytest.mark.parametrize("granularity", ["token", "channel"])
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_round_trip_error_is_at_most_half_a_step_per_group(bits, granularity):
    x = keys_with_outliers()
    q = quantize_kv(x, bits=bits, granularity=granularity, group_size=8)
    x_hat = q.dequantize()
    scale, minimum = per_element(q, q.scale, x.shape), per_element(q, q.minimum, x.shape)
    assert x_hat.shape == x.shape and x_hat.dtype == x.dtype
    assert q.codes.dtype == torch.uint8 and q.codes.shape[-1] == 8 * bits // 8  # 8 codes: 4 bytes at 4 bits
    assert q.scale.dtype == q.minimum.dtype == torch.float16
    assert bool((minimum <= x).all()) and bool((x <= minimum + scale * (2 ** bits - 1) * (1 + 1e-6)).all())
    assert bool(((x - x_hat).abs() <= scale / 2 * (1 + 1e-4) + 1e-6).all())
    steps = torch.round((x_hat - minimum) / scale)  # every value lands on its group's grid
    assert torch.allclose(x_hat, minimum + scale * steps, atol=1e-5) and int(steps.max()) <= 2 ** bits - 1
    assert q.nbytes == q.codes.numel() + 2 * 2 * q.scale.numel()


@pytest.mark.parametrize("granularity", ["token", "channel"])
def test_fp8_round_trip_error_is_relative(granularity):
    """E4M3 keeps 3 mantissa bits: |x - x_hat| <= 2^-4 |x| (normals) + 2^-10 scale (subnormals' half step)."""
    x = keys_with_outliers()
    q = quantize_kv(x, bits="fp8_e4m3", granularity=granularity, group_size=16)
    scale = per_element(q, q.scale, x.shape)
    assert q.codes.dtype == torch.float8_e4m3fn and q.minimum is None
    assert float(q.codes.float().abs().max()) <= 448
    assert bool(((x - q.dequantize()).abs() <= 2 ** -4 * x.abs() + 2 ** -10 * scale + 1e-6).all())
    assert q.nbytes == x.numel() + 2 * q.scale.numel()


def test_per_channel_groups_absorb_an_outlier_channel():
    """KIVI's point on a toy: a channel offset by +20 wrecks per-token groups, not per-channel ones."""
    x = keys_with_outliers()
    errors = {g: float((quantize_kv(x, 2, g, 16).dequantize() - x).pow(2).mean()) for g in ("token", "channel")}
    assert errors["channel"] * 4 < errors["token"]


# ---- the cache's storage: KIVI's window rule and the byte formula ---------------------------------------

CONFIG = LlamaConfig(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)  # head_dim 64


def feed(cache, chunks, batch=1, config=CONFIG):
    """Push random keys / values through every layer of `cache` in chunks; return the concatenated inputs."""
    shape = (batch, config.num_key_value_heads, 0, config.head_dim)
    seen = [(torch.empty(shape), torch.empty(shape)) for _ in range(config.num_hidden_layers)]
    for n in chunks:
        for layer in range(config.num_hidden_layers):
            k, v = torch.randn(batch, shape[1], n, shape[3]), torch.randn(batch, shape[1], n, shape[3])
            k[..., 7] += 10.0
            cache.update(k, v, layer)
            seen[layer] = (torch.cat([seen[layer][0], k], -2), torch.cat([seen[layer][1], v], -2))
    return seen


@pytest.mark.parametrize("residual, unit", [(32, 32), (0, 16), (64, 64)], ids=["R32", "R0", "R64"])
def test_window_follows_kivi_keys_by_whole_windows_values_token_by_token(residual, unit):
    cache = QuantizedKVCache(bits=4, group_size=16, residual_length=residual)
    steps = [45] + [1] * 40 + [7, 20]
    k_all, v_all = torch.empty(1, 2, 0, 64), torch.empty(1, 2, 0, 64)
    stored_k = stored_v = 0
    for n in steps:
        k, v = torch.randn(1, 2, n, 64), torch.randn(1, 2, n, 64)
        k_all, v_all = torch.cat([k_all, k], -2), torch.cat([v_all, v], -2)
        keys, values = cache.update(k, v, 0)
        # This step sees the float window and its own tokens exactly, the older history within a 4-bit step.
        assert keys.shape == values.shape == k_all.shape
        assert torch.equal(keys[..., stored_k:, :], k_all[..., stored_k:, :])
        assert torch.equal(values[..., stored_v:, :], v_all[..., stored_v:, :])
        assert (keys - k_all).abs().max() < 0.5 and (values - v_all).abs().max() < 0.5
        layer, total = cache.layers[0], k_all.shape[-2]
        stored_k = 0 if layer._quantized_keys is None else layer._quantized_keys.tokens
        stored_v = 0 if layer._quantized_values is None else layer._quantized_values.tokens
        assert stored_k == total // unit * unit  # keys: flushed whole when the window fills
        assert stored_v == max(0, total - residual)  # values: the last R stay float
        assert torch.equal(layer.keys, k_all[..., stored_k:, :]) and torch.equal(layer.values, v_all[..., stored_v:, :])
    assert cache.get_seq_length() == sum(steps)


SETTINGS = {
    "KIVI-4 g32 R32": {"bits": 4},
    "2-bit per token R0": {"bits": 2, "key_granularity": "token", "residual_length": 0},
    "fp8 g16 R64": {"bits": "fp8_e4m3", "group_size": 16, "residual_length": 64},
    "8-bit V/channel": {"bits": 8, "value_granularity": "channel", "group_size": 16, "residual_length": 16},
    "keys-only 2-bit": {"bits": (2, None)},
    "float": {"bits": None},
}


@pytest.mark.parametrize("tokens", [1, 31, 32, 33, 95, 130])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_nbytes_equals_the_byte_formula(name, tokens):
    settings = SETTINGS[name]
    cache = QuantizedKVCache(**settings)
    third = max(1, tokens // 3)
    feed(cache, [third, 1, tokens - third - 1] if tokens > third + 1 else [tokens], batch=2)
    assert cache.get_seq_length() == tokens
    assert cache.nbytes == kv_cache_bytes(CONFIG, tokens, **settings, batch_size=2, dtype=torch.float32)


def test_byte_formula_by_hand_and_against_float16():
    """KIVI-4 g32: 16 code bytes + 2 + 2 per 32 values; SmolLM2-shaped (30 layers, 3 kv heads, head_dim 64) at 8k."""
    smol = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30)
    float16 = kv_cache_bytes(smol, 8192, bits=None)
    assert float16 == 2 * 30 * 3 * 64 * 8192 * 2
    # keys: 8192 tokens all quantized (8192 % 32 == 0); values: the last 32 stay float16
    by_hand = 30 * 3 * (8192 * 64 // 32 * 20 + (8160 * 64 // 32 * 20 + 32 * 64 * 2))
    assert kv_cache_bytes(smol, 8192, bits=4) == by_hand
    assert 0.31 < by_hand / float16 < 0.32  # 4 bits + 32 bits of metadata per 32 values = 5 bits


# ---- the model level: transformers' Cache API -------------------------------------------------------------


def chunked_logits(model, ids, cache, chunks, **kwargs):
    out, begin = [], 0
    with torch.no_grad():
        for n in chunks:
            out.append(model(ids[:, begin:begin + n], cache=cache, use_cache=True, **kwargs).logits)
            begin += n
    return torch.cat(out, dim=1)  # (1, tokens, vocab)


@pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")
def test_float_cache_and_a_window_not_yet_full_give_exactly_the_float_logits(tiny):
    ids = torch.randint(3, 100, (1, 60))
    chunks = [12, 9, 1, 1, 1]  # 24 tokens: inside a 32-token window
    reference = chunked_logits(tiny, ids, DynamicCache(), chunks)
    for cache in (QuantizedKVCache(bits=None), QuantizedKVCache(bits=2, group_size=8)):
        with torch.no_grad():  # the spelling, past_key_values=, once
            first = tiny(ids[:, :12], past_key_values=cache, use_cache=True).logits
        assert torch.equal(torch.cat([first, chunked_logits(tiny, ids[:, 12:], cache, chunks[1:])], 1), reference)
    long = [40, 10, 1, 1]  # past the window: the 2-bit history now shows
    reference = chunked_logits(tiny, ids, DynamicCache(), long)
    assert torch.equal(chunked_logits(tiny, ids, QuantizedKVCache(bits=None), long), reference)
    assert not torch.allclose(chunked_logits(tiny, ids, QuantizedKVCache(bits=2, group_size=8), long), reference)


def test_generate_runs_greedy_and_with_beams(tiny):
    prompt = torch.randint(3, 100, (1, 30))
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 2}
    with torch.no_grad():
        plain = tiny.generate(prompt, **kwargs)
        assert torch.equal(tiny.generate(prompt, cache=QuantizedKVCache(bits=None), **kwargs), plain)
        cache = QuantizedKVCache(bits=4, group_size=8, residual_length=8)
        out = tiny.generate(prompt, cache=cache, **kwargs)
        assert out.shape == plain.shape and torch.equal(out[:, :30], prompt)
        assert cache.get_seq_length() == 41 and cache.nbytes < kv_cache_bytes(tiny.config, 41, None,
                                                                                dtype=torch.float32)
        beams = {"max_new_tokens": 5, "num_beams": 2, "do_sample": False, "pad_token_id": 2}
        assert torch.equal(tiny.generate(prompt, cache=QuantizedKVCache(bits=None), **beams),
                           tiny.generate(prompt, **beams))
        assert tiny.generate(prompt, cache=QuantizedKVCache(bits=2, group_size=8), **beams).shape == (1, 35)


# ---- bad settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"bits": 3}, ValueError, "bits"),
    ({"bits": "fp8"}, ValueError, "fp8_e4m3"),
    ({"bits": 4.0}, ValueError, "bits"),
    ({"bits": True}, ValueError, "bits"),
    ({"bits": (2, 4, 8)}, ValueError, "pair"),
    ({"key_granularity": "row"}, ValueError, "key_granularity"),
    ({"value_granularity": None}, TypeError, "value_granularity"),
    ({"group_size": 0}, ValueError, "group_size"),
    ({"residual_length": -1}, ValueError, "residual_length"),
    ({"residual_length": 16}, ValueError, "multiple of group_size"),
    ({"residual_length": 48}, ValueError, "multiple of group_size"),
    ({"bits": 2, "key_granularity": "token", "value_granularity": "channel", "residual_length": 8}, ValueError,
     "per-channel values"),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(f"{k}={v[k]}" for k in v))
def test_bad_settings_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        QuantizedKVCache(**kwargs)
    with pytest.raises(error, match=match):
        kv_cache_bytes(CONFIG, 100, **kwargs)


def test_settings_the_model_decides_are_refused_clearly(tiny):
    QuantizedKVCache(bits=None, residual_length=16)  # a float cache has no groups: nothing to refuse
    with pytest.raises(ValueError, match="head_dim=16"):  # per-token groups of 32 channels, head_dim 16
        tiny(torch.tensor([[5, 6, 7]]), cache=QuantizedKVCache(bits=4, group_size=32))
    with pytest.raises(ValueError, match="head_dim=64"):
        kv_cache_bytes(CONFIG, 10, group_size=128, residual_length=128)
    with pytest.raises(TypeError, match="num_hidden_layers"):
        kv_cache_bytes({"layers": 2}, 10)
    with pytest.raises(ValueError, match="tokens"):
        kv_cache_bytes(CONFIG, -1)
    with pytest.raises(ValueError, match="divide"):
        quantize_kv(torch.randn(1, 1, 20, 16), bits=4, granularity="channel", group_size=16)
    with pytest.raises(ValueError, match="None keeps"):
        quantize_kv(torch.randn(1, 1, 16, 16), bits=None)
    with pytest.raises(TypeError, match="floating-point"):
        quantize_kv(torch.ones(1, 1, 16, 16, dtype=torch.int32))
    cache = QuantizedKVCache(bits=4, group_size=8)
    feed(cache, [40])
    with pytest.raises(ValueError, match="cropped"):
        cache.crop(-1)


# ---- SmolLM2's real keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(llm_cache_dir):
    from qlearn.data import llm

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QLEARN_CACHE_DIR", str(llm_cache_dir))
        model, tokenizer = llm.load_llm(progress=False)
    ids = tokenizer(llm.course_text("eval"), return_tensors="pt")["input_ids"][:, :112]  # (1, 112)
    return model, tokenizer, ids


@pytest.mark.real_llm
def test_real_keys_want_per_channel_groups_at_2_bits(smollm2):
    """Attention probabilities of 16 new tokens over 96 cached ones, keys quantized at 2 bits (values float)."""
    model, _, ids = smollm2
    model.set_attn_implementation("eager")
    try:
        attentions = {}
        for name, cache in [("float", DynamicCache()),
                            ("channel", QuantizedKVCache(bits=(2, None), key_granularity="channel", residual_length=0)),
                            ("token", QuantizedKVCache(bits=(2, None), key_granularity="token", residual_length=0))]:
            chunked_logits(model, ids[:, :96], cache, [96])
            with torch.no_grad():
                out = model(ids[:, 96:], cache=cache, use_cache=True, output_attentions=True)
            attentions[name] = torch.stack(out.attentions)  # (layers, 1, heads, 16, 112)
    finally:
        model.set_attn_implementation("sdpa")
    error = {g: float((attentions[g] - attentions["float"]).abs().mean()) for g in ("channel", "token")}
    assert error["channel"] * 1.5 < error["token"], error  # 1.76x here; the KL gap on the model is larger


@pytest.mark.real_llm
def test_real_model_generates_with_a_2_bit_kivi_cache(smollm2):
    model, tokenizer, ids = smollm2
    cache = QuantizedKVCache(bits=2)
    with torch.no_grad():
        out = model.generate(ids[:, :40], cache=cache, max_new_tokens=6, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    assert out.shape == (1, 46) and cache.get_seq_length() == 45
    assert cache.nbytes == kv_cache_bytes(model.config, 45, bits=2, dtype=torch.float32)
