"""Measuring a quantized KV cache: one layer's attention against its quantized cache, and a model scored through
caches chunk by chunk (perplexity, KL and top-1 agreement against the float cache).

The cache itself is `qlearn.methods.kv_cache` (KIVI); this file only looks at it and scores it.

    attention_states   a forward pass that keeps, per layer, the queries, the keys before and after RoPE and the
                       values (what the cache stores)
    attention_error    softmax(q K^T / sqrt(d)) and its output, with K and V as a QuantizedKVCache stores them,
                       against the float ones
    score_caches       long text fed in chunks through several caches in lockstep, so every token of a chunk attends
                       to the quantized history of the chunks before it; scored against a float DynamicCache
    hf_quantized_cache transformers' own QuantizedCache (quanto or HQQ backend), with this module's axis names
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from transformers import DynamicCache, QuantizedCache

from ..core.quiet import silence_torchao_import_noise
from ..core.validation import check_choice, check_float_tensor, check_module, check_positive_int
from .kv_cache import QuantizedKVCache

__all__ = ["CacheScore", "attention_error", "attention_states", "hf_quantized_cache", "score_caches"]


def _check_ids(model, ids) -> torch.Tensor:
    check_module(model, "model")
    if not callable(getattr(model, "get_input_embeddings", None)):
        raise TypeError(f"model must be a causal language model (such as load_llm()'s), got {type(model).__name__}")
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2 or ids.shape[0] != 1:
        raise TypeError(f"ids must be token ids, a torch.long tensor of shape (1, tokens), got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
    vocab = model.get_input_embeddings().num_embeddings
    if ids.shape[1] < 2 or int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise ValueError(f"ids must hold at least 2 token ids in 0..{vocab - 1}, got {ids.shape[1]} ids "
                         f"from {int(ids.min()) if ids.numel() else None} to {int(ids.max()) if ids.numel() else None}")
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def attention_states(model: torch.nn.Module, ids: torch.Tensor, layers=None) -> dict[int, dict[str, torch.Tensor]]:
    """One forward pass of a Llama-style model, keeping each chosen layer's attention inputs (float32, batch 1).

        q      = RoPE(x W_q^T)   the queries             k = RoPE(k_pre)   the keys the cache stores
        k_pre  = x W_k^T         the keys before RoPE    v = x W_v^T       the values
    q comes from the model's own rotary embedding (apply_rotary_pos_emb); k and v are read back from the cache.
    Shapes: ids (1, T) -> {layer: {"q": (heads, T, d), "k_pre", "k", "v": (kv_heads, T, d)}}.
    """
    silence_torchao_import_noise()  # transformers' modeling_llama imports torchao, which logs harmless lines
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    ids = _check_ids(model, ids)
    blocks = model.model.layers
    chosen = range(len(blocks)) if layers is None else layers
    if isinstance(chosen, (str, bytes)) or not hasattr(chosen, "__iter__"):
        raise TypeError(f"layers must be None (all) or a list of layer indices, got {layers!r}")
    chosen = list(chosen)
    if not chosen or not all(type(i) is int and 0 <= i < len(blocks) for i in chosen):
        raise ValueError(f"layers must be None (all) or layer indices in 0..{len(blocks) - 1}, got {layers!r}")
    d = model.config.head_dim if getattr(model.config, "head_dim", None) else \
        model.config.hidden_size // model.config.num_attention_heads
    seen: dict[int, dict[str, torch.Tensor]] = {i: {} for i in chosen}

    def keep(i, name):
        def hook(_module, _inputs, out):
            seen[i][name] = out[0].float().reshape(out.shape[1], -1, d).transpose(0, 1)  # (heads, T, d)
        return hook

    handles = [getattr(blocks[i].self_attn, f"{n}_proj").register_forward_hook(keep(i, n))
               for i in chosen for n in ("q", "k")]
    cache = DynamicCache()
    try:
        model(ids, cache=cache, use_cache=True)
    finally:
        for h in handles:
            h.remove()
    position_ids = torch.arange(ids.shape[1], device=ids.device)[None]  # (1, T)
    out = {}
    for i in chosen:
        q_pre, k_pre = seen[i]["q"], seen[i]["k"]
        cos, sin = model.model.rotary_emb(q_pre, position_ids)  # (1, T, d) each
        q, _ = apply_rotary_pos_emb(q_pre[None], k_pre[None], cos, sin)  # (1, heads, T, d)
        layer = cache.layers[i]
        out[i] = {"q": q[0], "k_pre": k_pre, "k": layer.keys[0].float(), "v": layer.values[0].float()}
    return out


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal softmax(q k^T / sqrt(d)) and its output, kv heads shared by groups of query heads (GQA), in float64.

    Shapes: q (H, T, d), k and v (H_kv, T, d) -> P (H, T, T), O (H, T, d).
    """
    q, k, v = q.double(), k.double(), v.double()
    k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)  # (H, T, d)
    v = v.repeat_interleave(q.shape[0] // v.shape[0], dim=0)  # (H, T, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (H, T, T)
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("q k^T overflows float64: q and k are too large for attention scores (|q k| > 1e308)")
    future = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool, device=q.device).triu(1)  # (T, T)
    P = torch.softmax(scores.masked_fill(future, -math.inf), dim=-1)  # (H, T, T)
    return P, P @ v


def attention_error(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bits=4, key_granularity: str = "channel",
                    value_granularity: str = "token", group_size: int = 32, residual_length: int = 0) -> dict:
    """How far one layer's attention moves when K and V are read back from a QuantizedKVCache with these settings.

    K_hat, V_hat = what the cache returns after storing all T tokens (quantized history + float window), then
        P = softmax(q K^T / sqrt(d)) (causal),  P_hat = softmax(q K_hat^T / sqrt(d)),  O = P V,  O_hat = P_hat V_hat
        score_error = P_hat - P on the causal entries,  output_error = ||O_hat - O|| / ||O||
    Every query t is scored against the stored keys 0..t, as a query arriving after the cache was filled would be.
    Shapes: q (heads, T, d), k and v (kv_heads, T, d) -> {"score_error": (n,), "output_error", "key_error",
    "value_error" (relative Frobenius), "nbytes" (the cache's, batch 1, one layer), "k_hat", "v_hat"}.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float_tensor(t, name)
        if t.ndim != 3:
            raise ValueError(f"{name} must have shape (heads, tokens, head_dim), got {tuple(t.shape)}")
    if k.shape != v.shape or q.shape[1:] != k.shape[1:] or q.shape[0] % k.shape[0]:
        raise ValueError(f"q {tuple(q.shape)} must share tokens and head_dim with k {tuple(k.shape)} and v "
                         f"{tuple(v.shape)}, and its heads must be a multiple of their kv heads")
    q, k, v = q.detach().float(), k.detach().float(), v.detach().float()
    cache = QuantizedKVCache(bits, key_granularity, value_granularity, group_size, residual_length)  # checks them
    cache.update(k[None], v[None], 0)
    k_hat, v_hat = (t[0] for t in cache.update(k[None, :, :0], v[None, :, :0], 0))  # (kv_heads, T, d) each
    P, out = _attend(q, k, v)
    P_hat, out_hat = _attend(q, k_hat, v_hat)
    causal = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool, device=q.device).tril()  # (T, T)
    return {"score_error": (P_hat - P)[:, causal].flatten().float(), "output_error": _relative(out_hat, out),
            "key_error": _relative(k_hat, k), "value_error": _relative(v_hat, v), "nbytes": cache.nbytes,
            "k_hat": k_hat, "v_hat": v_hat}


def _relative(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """||x_hat - x|| / ||x|| (Frobenius, float64); 0 where both are 0."""
    x_hat, x = x_hat.double(), x.double()
    return float((x_hat - x).norm() / x.norm().clamp(min=torch.finfo(torch.float64).tiny))


def hf_quantized_cache(config, backend: str = "quanto", bits: int = 4, key_granularity: str = "channel",
                       value_granularity: str = "token", group_size: int = 32, residual_length: int = 32):
    """transformers' QuantizedCache with this module's names: keys and values per "channel" or per "token".

    quanto's axis 0 cuts groups of `group_size` consecutive channels of a token (per token) and axis -1 groups along
    the tokens of each channel (per channel); HQQ's axis 1 is per token and 0 its other axis. Unlike qlearn's cache,
    transformers quantizes the first chunk whole and, each time its float window of `residual_length` tokens fills,
    re-quantizes the whole history with it. The backend package is imported when the cache is built.
    Shapes: per layer, keys and values (batch, kv_heads, tokens, head_dim), as any Cache.
    """
    check_choice(backend, "backend", ("quanto", "hqq"))
    allowed = (2, 4) if backend == "quanto" else (1, 2, 3, 4, 8)
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise ValueError(f"bits must be one of {allowed} for the {backend} backend, got {bits!r}")
    if not all(hasattr(config, a) for a in ("num_hidden_layers", "num_attention_heads", "hidden_size")):
        raise TypeError(f"config must be a transformers model config (model.config), got {type(config).__name__}")
    check_choice(key_granularity, "key_granularity", ("channel", "token"))
    check_choice(value_granularity, "value_granularity", ("channel", "token"))
    check_positive_int(group_size, "group_size")
    check_positive_int(residual_length, "residual_length", minimum=0)
    axis = {"quanto": {"channel": -1, "token": 0}, "hqq": {"channel": 0, "token": 1}}[backend]
    return QuantizedCache(backend=backend, config=config, nbits=bits, axis_key=axis[key_granularity],
                          axis_value=axis[value_granularity], q_group_size=group_size, residual_length=residual_length)


@dataclass(frozen=True)
class CacheScore:
    """One cache's scores against the float cache; `error` (and None numbers) when it did not run.

    ppl = exp(mean NLL of the next token), kl = mean KL(p_float || p_cache) in nats, top1 = share of positions whose
    most likely token is the float cache's; nbytes = what the cache held at the end (None where it cannot say).
    """

    label: str
    ppl: float | None
    kl: float | None
    top1: float | None
    nbytes: int | None
    error: str | None
    cache: object = None


@torch.no_grad()
def score_caches(model: torch.nn.Module, ids: torch.Tensor, caches: Mapping[str, Callable[[], object]],
                 chunk: int = 32) -> dict[str, CacheScore]:
    """Feed `ids` chunk by chunk through a float DynamicCache and through each cache `caches[label]()` builds.

    Chunk c (tokens [c * chunk, (c + 1) * chunk)) attends to what each cache stored from the chunks before it,
    so with chunk = 32 every token sees quantized history; per cache, over the N - 1 predicted positions:
        ppl  = exp( -1/(N-1) sum_t log p(x_{t+1} | x_<=t) )
        kl   = 1/N sum_t sum_v p_float(v) (log p_float(v) - log p(v))       (every position, the last included)
        top1 = 1/N sum_t [argmax p_float = argmax p]
    "float" is always added (the DynamicCache; its kl is 0). A cache that fails to build or to run gets its error
    message ("TypeName: message") instead of numbers, as transformers' backends do where a package is missing.
    Shapes: ids (1, N) -> {label: CacheScore}.
    """
    ids = _check_ids(model, ids)
    check_positive_int(chunk, "chunk")
    if not isinstance(caches, Mapping) or not all(isinstance(k, str) and callable(f) for k, f in caches.items()) \
            or "float" in caches:
        raise TypeError("caches must be a dict of label -> a function that builds a new cache (label 'float' is "
                        f"taken by the reference), got {caches!r}")
    built, errors = {"float": DynamicCache()}, {}
    for label, make in caches.items():
        try:
            built[label] = make()
        except Exception as err:  # noqa: BLE001 - a cache that cannot start on this machine is reported, not fatal
            errors[label] = f"{type(err).__name__}: {err}"
    sums = {label: [0.0, 0.0, 0.0] for label in built}  # nll, kl, top1
    n = ids.shape[1]
    for begin in range(0, n, chunk):
        piece = ids[:, begin:begin + chunk]  # (1, c)
        target = ids[0, begin + 1:begin + chunk + 1]  # (c,) or (c - 1,) at the end
        logp_ref = None
        for label, cache in built.items():
            if label in errors:
                continue
            try:
                logits = model(piece, cache=cache, use_cache=True).logits[0]  # (c, vocab)
            except Exception as err:  # noqa: BLE001 - a backend failing mid-way is reported too
                errors[label] = f"{type(err).__name__}: {err}"
                continue
            logp = torch.log_softmax(logits.double(), dim=-1)  # (c, vocab)
            logp_ref = logp if logp_ref is None else logp_ref
            s = sums[label]
            s[0] -= float(logp[:target.shape[0]].gather(-1, target[:, None]).sum())
            s[1] += float((logp_ref.exp() * (logp_ref - logp)).sum())
            s[2] += float((logp_ref.argmax(-1) == logp.argmax(-1)).sum())
    out = {}
    for label, cache in built.items():
        if label in errors:
            out[label] = CacheScore(label, None, None, None, None, errors[label], cache)
            continue
        nll, kl, top1 = sums[label]
        nbytes = cache.nbytes if isinstance(cache, QuantizedKVCache) else _float_bytes(cache)
        out[label] = CacheScore(label, math.exp(nll / (n - 1)), kl / n, top1 / n, nbytes, None, cache)
    out.update({label: CacheScore(label, None, None, None, None, err) for label, err in errors.items()
                if label not in out})
    return out


def _float_bytes(cache) -> int | None:
    """Bytes of a plain float cache's keys and values (None for other caches, e.g. transformers' quantized one)."""
    if type(cache) is not DynamicCache:
        return None
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
