"""KIVI, a quantized KV cache (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache",
arXiv 2402.02750; code github.com/jy-yuan/KIVI), plugged into transformers' Cache API.

A causal LM keeps every past token's keys and values, K and V (batch, kv_heads, tokens, head_dim) per layer; the
cache grows with the context, and KIVI stores it in 2-4 bits. Keys have a few outlier channels, values do not
(notebook 09's lesson), so keys get one scale per channel (groups of G tokens) and values one per token (groups of
G channels). The objective is the next query's attention output, the newest tokens kept in float:

    min || softmax(q [K_hat_old; K_new]^T / sqrt(d)) [V_hat_old; V_new] - softmax(q K^T / sqrt(d)) V ||

with K_hat, V_hat asymmetric min-max per group (m = min, s = (max - min) / (2^b - 1) over the group):

    x_hat = m + s * clamp(round((x - m) / s), 0, 2^b - 1)

Algorithm 1 of the paper, as its code streams it (residual length R, a multiple of G):
    keys per channel: new tokens join a float residual; when it holds R tokens they are quantized (R / G groups
        of G tokens per channel) and it empties.                  After n tokens floor(n / R) * R are quantized.
    values per token: new tokens join a float residual of the last R tokens; older ones are quantized one token
        at a time (head_dim / G groups of G channels).            After n tokens max(0, n - R) are quantized.
    A step attends to its own tokens and to the residual in float; quantizing happens after it.
Either granularity may serve keys or values here, and R = 0 means no window (per-token groups are quantized at
once, per-channel groups as soon as G tokens have arrived).

Formats: 8, 4, 2 bits (codes packed by `qlearn.inference.packing`: 4-bit two per byte, 2-bit four per byte), or
"fp8_e4m3": float8_e4m3fn codes of x / s, s = absmax / 448 per group. In qlearn's r = scale * (q - zero_point)
(q = u + qmin) KIVI's minimum is a float zero point, qmin - m / s; it is stored as KIVI stores it, (s, m), both
float16 and rounded outward (m down, s up) so every value lies inside its grid and |x - x_hat| <= s / 2.
Simplified: no fused dequantize-matmul kernel (each step dequantizes the whole history: what a CPU pays for the
memory); one group size for keys and values; padding tokens are quantized with the rest. FP8 per group is not
KIVI's (vLLM keeps one fp8 scale per tensor). A cache is no layer method: nothing registers with quantize_model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers.cache_utils import BaseQuantizedLayer, Cache

from ..core.primitives import qrange
from ..core.validation import check_choice, check_float_tensor, check_positive_int
from ..inference import packing

__all__ = ["FORMATS", "GRANULARITIES", "META_DTYPE", "QuantizedKV", "QuantizedKVCache", "QuantizedKVLayer",
           "kv_cache_bytes", "quantize_kv"]

FORMATS = (8, 4, 2, "fp8_e4m3")
GRANULARITIES = ("token", "channel")
META_DTYPE = torch.float16  # every scale and minimum, as KIVI stores them (the model's float16)
FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448


@dataclass(frozen=True, eq=False)
class QuantizedKV:
    """Keys or values stored quantized: codes, and a float16 scale (and minimum) per group of `group_size`.

    "token": x (..., T, D) is viewed as (..., T, D / g, g); "channel": as (..., D, T / g, g) (transposed first).
    Shapes: codes (..., A, N, packing.packed_length(g, bits)) uint8, or (..., A, N, g) float8_e4m3fn;
    scale and minimum (..., A, N, 1) float16; minimum is None for fp8.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    minimum: torch.Tensor | None
    bits: int | str
    granularity: str
    group_size: int
    dtype: torch.dtype

    @property
    def tokens(self) -> int:
        return self.codes.shape[-3] if self.granularity == "token" else self.codes.shape[-2] * self.group_size

    def stored(self) -> dict[str, torch.Tensor]:
        """Name -> every tensor kept; these, and only these, are counted in `nbytes`."""
        kept = {"codes": self.codes, "scale": self.scale}
        return kept if self.minimum is None else {**kept, "minimum": self.minimum}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.stored().values())

    def dequantize(self) -> torch.Tensor:
        """x_hat = minimum + scale * u (integers, u = 0..2^b - 1), or scale * codes (fp8); in `dtype`.

        Shapes: -> (..., T, D).
        """
        if self.bits == "fp8_e4m3":
            xb = self.codes.float() * self.scale.float()  # (..., A, N, g)
        else:
            qmin, _ = qrange(self.bits)
            u = packing.unpack(self.codes, self.bits, self.group_size).float() - qmin  # (..., A, N, g)
            xb = self.minimum.float() + self.scale.float() * u
        x = xb.reshape(*xb.shape[:-2], -1)  # (..., T, D) per token, (..., D, T) per channel
        return (x if self.granularity == "token" else x.transpose(-1, -2)).to(self.dtype)  # (..., T, D)

    def map(self, fn, other: QuantizedKV | None = None) -> QuantizedKV:
        """The same storage with `fn` applied to every stored tensor (and its twin in `other`, when given)."""
        parts = [t if other is None else (t, getattr(other, name)) for name, t in self.stored().items()]
        kept = dict(zip(self.stored(), map(fn, parts)))
        return QuantizedKV(kept["codes"], kept["scale"], kept.get("minimum"), self.bits, self.granularity,
                           self.group_size, self.dtype)

    def append(self, newer: QuantizedKV) -> QuantizedKV:
        """This storage followed by `newer`'s tokens (the block view's token dim: T per token, T / g per channel)."""
        dim = -3 if self.granularity == "token" else -2
        return self.map(lambda pair: torch.cat(pair, dim), newer)


def _round_fp16(x: torch.Tensor, up: bool) -> torch.Tensor:
    """The nearest float16 at or above (up) / at or below x: the rounding that keeps a group inside its grid."""
    h = x.to(META_DTYPE)
    side = torch.full_like(h, float("inf") if up else -float("inf"))
    wrong = h.float() < x if up else h.float() > x
    return torch.where(wrong, torch.nextafter(h, side), h)


def _quantize(x: torch.Tensor, bits, granularity: str, group_size: int) -> QuantizedKV:
    """quantize_kv without the checks (the cache's own calls)."""
    xt = x if granularity == "token" else x.transpose(-1, -2)  # (..., T, D) or (..., D, T)
    xb = xt.float().reshape(*xt.shape[:-1], xt.shape[-1] // group_size, group_size)  # (..., A, N, g)
    tiny = torch.finfo(META_DTYPE).smallest_normal
    if bits == "fp8_e4m3":
        minimum = None
        scale = _round_fp16(xb.abs().amax(-1, keepdim=True) / FP8_MAX, up=True).clamp(min=tiny)  # (..., A, N, 1)
    else:
        minimum = _round_fp16(xb.amin(-1, keepdim=True), up=False)  # (..., A, N, 1)
        scale = _round_fp16((xb.amax(-1, keepdim=True) - minimum.float()) / (2 ** bits - 1), up=True).clamp(min=tiny)
    if not bool(torch.isfinite(scale).all()):  # a minimum overflows first into an infinite scale
        raise ValueError(f"keys or values beyond float16's range (max |x| = {float(xb.abs().max()):.3g}) cannot "
                         f"keep a float16 scale and minimum; this cache needs |x| < {torch.finfo(META_DTYPE).max:g}")
    if bits == "fp8_e4m3":
        codes = (xb / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(FP8)  # (..., A, N, g)
    else:
        u = torch.round((xb - minimum.float()) / scale.float()).clamp(0, 2 ** bits - 1)  # (..., A, N, g) 0..2^b - 1
        codes = packing.pack((u + qrange(bits)[0]).to(torch.int8), bits)  # (..., A, N, packed_length(g)) uint8
    return QuantizedKV(codes, scale, minimum, bits, granularity, group_size, x.dtype)


def _check_format(bits, name: str):
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, str)) or bits not in FORMATS):
        raise ValueError(f"{name} must be one of {FORMATS} or None (float), got {bits!r}")
    return bits


def quantize_kv(x: torch.Tensor, bits=4, granularity: str = "token", group_size: int = 32) -> QuantizedKV:
    """Quantize cached keys or values, asymmetric min-max (or FP8 absmax) per group of `group_size`.

    "token":   one (scale, minimum) per token and group of g channels:  x (..., T, D), g divides D
    "channel": one per channel and group of g tokens (KIVI's keys):      x (..., T, D), g divides T
    Shapes: x (..., T, D), e.g. (batch, kv_heads, T, head_dim) -> QuantizedKV (see its docstring).
    """
    check_float_tensor(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., tokens, head_dim), got {tuple(x.shape)}")
    if _check_format(bits, "bits") is None:
        raise ValueError(f"bits must be one of {FORMATS} to quantize (None keeps a cache in float)")
    check_choice(granularity, "granularity", GRANULARITIES)
    check_positive_int(group_size, "group_size")
    axis, what = (-1, "head_dim") if granularity == "token" else (-2, "token count")
    if x.shape[axis] % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {what} {x.shape[axis]} of x "
                         f"{tuple(x.shape)}; {granularity} groups need a divisor of it")
    return _quantize(x, bits, granularity, group_size)


@dataclass(frozen=True)
class _Spec:
    """One side ("keys" or "values") of a cache: format, granularity, group size, residual window; checked."""

    side: str
    bits: int | str | None
    granularity: str
    group_size: int
    residual_length: int

    def __post_init__(self):
        _check_format(self.bits, f"bits ({self.side})")
        check_choice(self.granularity, f"{self.side[:-1]}_granularity", GRANULARITIES)
        if self.bits is not None and self.granularity == "channel" and self.residual_length % self.group_size:
            raise ValueError(
                f"per-channel {self.side} are quantized in groups of group_size={self.group_size} tokens, flushed "
                f"from the residual window when it fills, so residual_length must be 0 (no window: a group is "
                f"quantized once full) or a multiple of group_size, got residual_length={self.residual_length}")

    def check_head_dim(self, head_dim: int) -> None:
        if self.bits is not None and self.granularity == "token" and head_dim % self.group_size:
            raise ValueError(f"per-token {self.side} are quantized in groups of group_size={self.group_size} "
                             f"channels, which must divide the model's head_dim={head_dim}")

    def quantized(self, tokens: int) -> int:
        """How many of `tokens` float tokens (the oldest) are quantized (module docstring's rule).

        Applied to the residual window at every step it moves tokens out; applied to the whole count n it gives
        how many are stored quantized after n tokens (the flushes add up to the same: unit-aligned or n - R).
        """
        if self.bits is None:
            return 0
        if self.granularity == "token":
            return max(0, tokens - self.residual_length)
        unit = self.residual_length or self.group_size
        return tokens // unit * unit


def _specs(bits, key_granularity, value_granularity, group_size, residual_length) -> tuple[_Spec, _Spec]:
    """Check the settings once and return the (keys, values) specs; `bits` may be a pair (keys, values)."""
    if isinstance(bits, (tuple, list)) and len(bits) != 2:
        raise ValueError(f"bits must be one format or a pair (key bits, value bits), got {bits!r}")
    key_bits, value_bits = bits if isinstance(bits, (tuple, list)) else (bits, bits)
    check_positive_int(group_size, "group_size")
    check_positive_int(residual_length, "residual_length", minimum=0)
    return (_Spec("keys", key_bits, key_granularity, group_size, residual_length),
            _Spec("values", value_bits, value_granularity, group_size, residual_length))


class QuantizedKVLayer(BaseQuantizedLayer):
    """One layer's cache: quantized keys and values plus the float residual window (`keys`, `values`).

    Shapes: update(key_states, value_states) (batch, kv_heads, new, head_dim) -> keys, values
    (batch, kv_heads, past + new, head_dim): dequantized history, then the float residual and the new tokens.
    """

    def __init__(self, key_spec: _Spec, value_spec: _Spec):
        super().__init__()
        self.specs = (key_spec, value_spec)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        for spec in self.specs:
            spec.check_head_dim(key_states.shape[-1])
        self.device = key_states.device
        self.keys = key_states.new_empty(*key_states.shape[:-2], 0, key_states.shape[-1])  # (batch, kv_heads, 0, d)
        self.values = value_states.new_empty(*value_states.shape[:-2], 0, value_states.shape[-1])
        self.is_initialized = True

    def _quantize(self, tensor: torch.Tensor, spec: _Spec) -> QuantizedKV:
        return _quantize(tensor, spec.bits, spec.granularity, spec.group_size)

    def _dequantize(self, q_tensor: QuantizedKV | None, like: torch.Tensor) -> torch.Tensor:
        return like[..., :0, :] if q_tensor is None else q_tensor.dequantize()  # (batch, kv_heads, stored, head_dim)

    def _flush(self, stored: QuantizedKV | None, window: torch.Tensor, spec: _Spec):
        """Move the oldest tokens of the float window into the quantized storage, as `spec` says."""
        n = spec.quantized(window.shape[-2])
        if n == 0:
            return stored, window
        new = self._quantize(window[..., :n, :], spec)
        kept = window[..., n:, :].clone()  # a copy, so the flushed floats are freed
        return new if stored is None else stored.append(new), kept

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Return the keys and values this step attends to, then store the new ones (quantizing what leaves)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys = torch.cat([self._dequantize(self._quantized_keys, key_states), self.keys, key_states], dim=-2)
        values = torch.cat([self._dequantize(self._quantized_values, value_states), self.values, value_states], -2)
        self.cumulative_length += key_states.shape[-2]
        self._quantized_keys, self.keys = self._flush(self._quantized_keys, torch.cat([self.keys, key_states], -2),
                                                      self.specs[0])
        self._quantized_values, self.values = self._flush(
            self._quantized_values, torch.cat([self.values, value_states], -2), self.specs[1])
        return keys, values

    @property
    def nbytes(self) -> int:
        """Bytes really held: quantized codes, scales and minimums, plus the float residual window."""
        if not self.is_initialized:
            return 0
        stored = sum(q.nbytes for q in (self._quantized_keys, self._quantized_values) if q is not None)
        return stored + sum(t.numel() * t.element_size() for t in (self.keys, self.values))

    def _map_batch(self, fn) -> None:
        """Apply `fn` (on the batch dim 0) to everything stored: beam search reorders, repeats and selects."""
        if self.is_initialized:
            self.keys, self.values = fn(self.keys), fn(self.values)
            self._quantized_keys, self._quantized_values = (
                None if q is None else q.map(fn) for q in (self._quantized_keys, self._quantized_values))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_batch(lambda t: t[indices, ...])

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("a quantized KV cache cannot be cropped (its groups span several tokens); start a new one")


class QuantizedKVCache(Cache):
    """KIVI's cache for any transformers decoder (Llama, SmolLM2, ...): no model config needed, layers made lazily.

        cache = QuantizedKVCache(bits=2)                  # KIVI-2: keys per channel, values per token, g32, R32
        model(ids, past_key_values=cache, use_cache=True); model.generate(ids, past_key_values=cache)
    (transformers 5.24 renames the argument `cache=`; `past_key_values=` still works, with a FutureWarning.)

    bits: 8, 4, 2, "fp8_e4m3", None (float: a plain cache), or a pair (key bits, value bits).
    key_granularity, value_granularity: "channel" (groups of group_size tokens per channel) or "token" (groups of
    group_size channels of the head dim per token). residual_length: the float window, 0 for none; with a per-channel
    side it must be a multiple of group_size (groups are flushed whole).
    Shapes: per layer, keys and values (batch, kv_heads, tokens, head_dim).
    """

    def __init__(self, bits=4, key_granularity: str = "channel", value_granularity: str = "token",
                 group_size: int = 32, residual_length: int = 32):
        key_spec, value_spec = _specs(bits, key_granularity, value_granularity, group_size, residual_length)
        self.specs = (key_spec, value_spec)
        super().__init__(layer_class_to_replicate=functools.partial(QuantizedKVLayer, key_spec, value_spec))

    @property
    def nbytes(self) -> int:
        """Bytes really held by every layer (codes, scales, minimums, float residual)."""
        return sum(layer.nbytes for layer in self.layers)


def _shape_of(config) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) of a transformers config (or anything with those attributes)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    try:
        layers, heads = config.num_hidden_layers, config.num_attention_heads
    except AttributeError as err:
        raise TypeError(f"config must be a transformers model config with num_hidden_layers and "
                        f"num_attention_heads, got {type(config).__name__}") from err
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return layers, kv_heads, head_dim


def kv_cache_bytes(config, tokens: int, bits=4, key_granularity: str = "channel", value_granularity: str = "token",
                   group_size: int = 32, residual_length: int = 32, batch_size: int = 1,
                   dtype: torch.dtype = torch.float16) -> int:
    """Bytes a QuantizedKVCache with these settings holds after `tokens` tokens (bits=None: a float cache).

    per layer, for keys and for values, m = tokens quantized (module docstring), D = head_dim, H = kv_heads:
        batch * H * ( m * D / g * (packed(g) + metadata) + (tokens - m) * D * dtype bytes )
    packed(g) = g * bits / 8 rounded up to whole bytes per group (fp8: g); metadata = 2 + 2 (float16 scale and
    minimum; fp8: 2). `dtype` is the float residual's (the model's dtype).
    """
    layers, kv_heads, head_dim = _shape_of(config)
    check_positive_int(tokens, "tokens", minimum=0)
    check_positive_int(batch_size, "batch_size")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a float torch.dtype (the residual's), got {dtype!r}")
    total = 0
    for spec in _specs(bits, key_granularity, value_granularity, group_size, residual_length):
        spec.check_head_dim(head_dim)
        m = spec.quantized(tokens)  # 0 for a float side
        if m:
            fp8 = spec.bits == "fp8_e4m3"
            codes = group_size if fp8 else packing.packed_length(group_size, spec.bits)
            total += m * head_dim // group_size * (codes + META_DTYPE.itemsize * (1 if fp8 else 2))
        total += (tokens - m) * head_dim * dtype.itemsize
    return total * batch_size * kv_heads * layers
