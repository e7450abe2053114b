"""qlearn.methods.kv_eval: one layer's attention through a quantized cache, and a model scored chunk by chunk.

A tiny random Llama (conftest's `tiny`: head_dim 16, 2 layers, grouped-query attention 4:2) stands in for SmolLM2.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from qlearn.core.metrics import perplexity
from qlearn.methods.kv_cache import QuantizedKVCache, kv_cache_bytes
from qlearn.methods.kv_eval import attention_error, attention_states, hf_quantized_cache, score_caches

IDS = torch.randint(3, 100, (1, 64), generator=torch.Generator().manual_seed(1))


def test_states_rebuild_the_layers_own_attention_output(tiny):
    """softmax(q k^T / sqrt(d)) v from the kept states, through o_proj, is what the attention module returned:
    so q carries RoPE as the model applies it, and k, v are what the cache stored."""
    seen = {}
    hook = tiny.model.layers[1].self_attn.register_forward_hook(lambda m, i, out: seen.update(o=out[0]))
    try:
        states = attention_states(tiny, IDS, layers=[1])
    finally:
        hook.remove()
    s = states[1]
    assert s["q"].shape == (4, 64, 16) and s["k"].shape == s["v"].shape == s["k_pre"].shape == (2, 64, 16)
    assert not torch.allclose(s["k"], s["k_pre"])  # RoPE moved the keys
    k, v = (t.repeat_interleave(2, dim=0) for t in (s["k"], s["v"]))  # (4, 64, 16)
    out = F.scaled_dot_product_attention(s["q"], k, v, is_causal=True)  # (4, 64, 16)
    rebuilt = tiny.model.layers[1].self_attn.o_proj(out.transpose(0, 1).reshape(64, 64))  # (64, hidden)
    assert torch.allclose(rebuilt, seen["o"][0], atol=1e-5)


def test_attention_error_is_zero_for_a_float_cache_and_grows_as_bits_fall(tiny):
    s = attention_states(tiny, IDS, layers=[0])[0]
    float_cache = attention_error(s["q"], s["k"], s["v"], bits=None, group_size=16)
    assert float_cache["output_error"] == 0 and float(float_cache["score_error"].abs().max()) == 0
    errors = [attention_error(s["q"], s["k"], s["v"], bits=b, group_size=16)["output_error"] for b in (8, 4, 2)]
    assert 0 < errors[0] < errors[1] < errors[2]
    n = 64 * 65 // 2  # causal entries per head
    assert attention_error(s["q"], s["k"], s["v"], bits=2, group_size=16)["score_error"].shape == (4 * n,)


def test_attention_error_bytes_match_the_formula_and_the_window_stays_float():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(4, 64, 16, generator=g), torch.randn(2, 64, 16, generator=g), torch.randn(2, 64, 16,
                                                                                                   generator=g)
    k[..., 3] += 20  # an outlier channel: per-channel keys absorb it, per-token groups stretch over it
    config = SimpleNamespace(num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    settings = ({"bits": 2, "residual_length": 16}, {"bits": 4, "residual_length": 0},
                {"bits": "fp8_e4m3", "residual_length": 0})
    for kwargs in settings:
        out = attention_error(q, k, v, group_size=16, **kwargs)
        assert out["nbytes"] == kv_cache_bytes(config, 64, group_size=16, dtype=torch.float32, **kwargs)
    channel = attention_error(q, k, v, bits=2, group_size=16, residual_length=16)
    token = attention_error(q, k, v, bits=2, key_granularity="token", group_size=16, residual_length=16)
    assert channel["key_error"] < token["key_error"] / 2 and channel["output_error"] < token["output_error"]
    assert torch.equal(channel["v_hat"][:, -16:], v[:, -16:])  # the last 16 values stay in float
    assert not torch.equal(channel["v_hat"][:, -17], v[:, -17])
    assert not torch.equal(channel["k_hat"][:, -16:], k[:, -16:])  # 64 keys = 4 full windows: all flushed


def test_scores_of_a_float_cache_match_perplexity_and_a_quantized_kl_matches_torch(tiny):
    scores = score_caches(tiny, IDS, {"none": lambda: QuantizedKVCache(bits=None),
                                      "kivi2": lambda: QuantizedKVCache(bits=2, group_size=16, residual_length=16)},
                          chunk=16)
    assert list(scores) == ["float", "none", "kivi2"]
    ref = perplexity(tiny, lambda text, return_tensors: {"input_ids": IDS}, "x", window=64, progress=False)
    assert math.isclose(scores["float"].ppl, ref, rel_tol=1e-5)  # chunked through a cache = one 64-token window
    assert scores["none"].ppl == scores["float"].ppl
    assert scores["none"].kl == 0 and scores["none"].top1 == 1 and scores["float"].kl == 0
    assert scores["none"].nbytes == scores["float"].nbytes == kv_cache_bytes(tiny.config, 64, None,
                                                                            dtype=torch.float32)
    # the oracle: the same chunks by hand, KL by torch's kl_div
    logits = {}
    for name, cache in (("float", DynamicCache()), ("kivi2", QuantizedKVCache(bits=2, group_size=16,
                                                                              residual_length=16))):
        with torch.no_grad():
            logits[name] = torch.cat([tiny(IDS[:, b:b + 16], cache=cache, use_cache=True).logits[0]
                                      for b in range(0, 64, 16)])  # (64, vocab)
    logp = {n: torch.log_softmax(t.double(), -1) for n, t in logits.items()}
    kl = F.kl_div(logp["kivi2"], logp["float"], log_target=True, reduction="sum") / 64
    k2 = scores["kivi2"]
    assert k2.kl > 0 and math.isclose(k2.kl, float(kl), rel_tol=1e-6)
    assert k2.top1 == float((logp["float"].argmax(-1) == logp["kivi2"].argmax(-1)).double().mean())
    nll = -logp["kivi2"][:-1].gather(-1, IDS[0, 1:, None]).mean()
    assert math.isclose(k2.ppl, math.exp(float(nll)), rel_tol=1e-9)
    assert k2.nbytes == kv_cache_bytes(tiny.config, 64, 2, group_size=16, residual_length=16, dtype=torch.float32)


def test_caches_that_cannot_start_or_run_are_reported_with_their_error(tiny):
    def broken():
        raise ImportError("no such backend here")

    g48 = lambda: QuantizedKVCache(4, group_size=48, residual_length=48)  # noqa: E731 - fails at the first step
    scores = score_caches(tiny, IDS[:, :32], {"broken": broken, "g48": g48}, chunk=16)
    assert scores["broken"].error == "ImportError: no such backend here" and scores["broken"].ppl is None
    assert scores["g48"].error.startswith("ValueError") and "head_dim=16" in scores["g48"].error
    assert scores["float"].error is None


def test_transformers_quanto_cache_runs_and_lands_near_qlearns_without_window(tiny):
    ids = torch.randint(3, 100, (1, 96), generator=torch.Generator().manual_seed(2))
    scores = score_caches(tiny, ids, {
        "quanto": lambda: hf_quantized_cache(tiny.config, "quanto", 4, group_size=16, residual_length=16),
        "qlearn": lambda: QuantizedKVCache(4, group_size=16, residual_length=0)}, chunk=16)
    assert scores["quanto"].error is None, scores["quanto"].error
    assert 0 < scores["quanto"].kl < 0.05 and abs(scores["quanto"].ppl / scores["qlearn"].ppl - 1) < 0.05


@pytest.mark.parametrize("call, error, match", [
    (lambda m: score_caches(m, IDS.float(), {}), TypeError, "torch.long"),
    (lambda m: score_caches(m, IDS[:, :1], {}), ValueError, "at least 2"),
    (lambda m: score_caches(m, IDS + 100, {}), ValueError, "0..99"),
    (lambda m: score_caches(m, IDS, {"float": DynamicCache}), TypeError, "taken"),
    (lambda m: score_caches(m, IDS, {"a": 3}), TypeError, "builds a new cache"),
    (lambda m: score_caches(m, IDS, {}, chunk=0), ValueError, "chunk"),
    (lambda m: attention_states(m, IDS, layers=[5]), ValueError, "layer indices"),
    (lambda m: attention_error(torch.randn(4, 8, 16), torch.randn(3, 8, 16), torch.randn(3, 8, 16)), ValueError,
     "multiple"),
    (lambda m: attention_error(torch.randn(8, 16), torch.randn(8, 16), torch.randn(8, 16)), ValueError, "shape"),
    (lambda m: attention_error(*[torch.randn(2, 8, 16)] * 3, bits=3), ValueError, "bits"),
    (lambda m: hf_quantized_cache(m.config, "bnb"), ValueError, "backend"),
], ids=["float-ids", "one-id", "beyond-vocab", "float-label", "not-callable", "chunk0", "layer", "gqa", "2d",
        "bits", "backend"])
def test_bad_inputs_are_refused(tiny, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny)
