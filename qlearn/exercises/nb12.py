"""Exercises of notebook 12 (the KV cache: its size, and what a quantized one costs per value).

Each check computes the answer itself (from `kv_cache_bytes` where it can) and compares. Answers may be any
number: int, float, numpy scalar or a one-element tensor.
"""

from __future__ import annotations

from types import SimpleNamespace

from ..core.validation import check_choice, check_positive_int
from ..methods.kv_cache import kv_cache_bytes
from ._feedback import Feedback, Mistake, check_number

__all__ = ["MISTRAL_7B", "bits_per_value", "check_bits_per_value", "check_cache_gib"]

# Mistral-7B's attention (its config.json): 32 layers, 32 query heads sharing 8 key-value heads of 128 dims
MISTRAL_7B = SimpleNamespace(num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                             hidden_size=4096)


def check_cache_gib(tokens, answer) -> Feedback:
    """Exercise 1: the float16 KV cache of Mistral-7B (MISTRAL_7B) for one sequence of `tokens` tokens, in GiB
    (2**30 bytes; the prompt asks for 3 significant digits)."""
    tokens = check_positive_int(tokens, "tokens")
    nbytes = kv_cache_bytes(MISTRAL_7B, tokens, bits=None)  # 2 * layers * kv_heads * head_dim * 2 bytes * tokens
    expected = nbytes / 2 ** 30
    mistakes = [Mistake(expected / 2, "that is the keys alone (or the values alone): the cache holds both, K and V"),
                Mistake(expected * 4, "you used the 32 query heads; with grouped-query attention only the 8 "
                        "key-value heads are cached"),
                Mistake(expected * 2, "that is a float32 cache (4 bytes a number); the prompt asks for float16"),
                Mistake(nbytes / 1e9, "that is GB (10^9 bytes); the prompt asks for GiB, 2^30 bytes"),
                Mistake(nbytes, "that is bytes: divide by 2**30 for GiB"),
                Mistake(nbytes / 2 ** 20, "that is MiB: divide by 1024 once more")]
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected],
        right_message=f"{expected:.3g} GiB for one sequence: 2 (K and V) x 32 layers x 8 heads x 128 dims x 2 bytes "
                      f"= 128 KiB per token, times {tokens}. A batch of 16 such conversations would need "
                      f"{16 * expected:.3g} GiB, more than the 13.5 GiB of the float16 weights.",
        wrong_message=lambda got: f"{got:g} GiB is not it: bytes = 2 (K and V) * layers * kv_heads * head_dim * 2 "
                                  "(float16) * tokens; divide by 2**30.",
        not_a_number="answer with a number of GiB (replace the None)")


def bits_per_value(bits: int, group_size: int, granularity: str = "token") -> float:
    """What one cached number really costs in a KIVI cache, metadata included (no float window):
    bits + 32 / group_size (a float16 scale and a float16 minimum per group of group_size numbers)."""
    if isinstance(bits, bool) or bits not in (2, 4, 8):
        raise ValueError(f"bits must be 2, 4 or 8, got {bits!r}")
    check_positive_int(group_size, "group_size")
    check_choice(granularity, "granularity", ("token", "channel"))
    return bits + 32 / group_size


def check_bits_per_value(bits, group_size, answer) -> Feedback:
    """Exercise 2: the bits one cached number costs at `bits` bits, groups of `group_size`, with the float16 scale
    and minimum of each group counted (exact: a short decimal)."""
    expected = bits_per_value(bits, group_size)
    mistakes = [Mistake(bits, "that counts the codes only: each group also keeps a float16 scale and a float16 "
                        "minimum, 32 bits shared by its numbers"),
                Mistake(bits + 16 / group_size, "you counted one float16 per group; KIVI keeps two (scale and "
                        "minimum)"),
                Mistake(16 / expected, "that is the compression against float16; the question asks for bits per "
                        "number"),
                Mistake(expected / 16, "that is the share of float16's size; the question asks for bits")]
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected],
        right_message=f"{expected:g} bits a number: {bits} for the code and 32 / {group_size} for the group's scale "
                      f"and minimum, {expected / 16:.3f}x float16's 16 bits before the float window is counted.",
        wrong_message=lambda got: f"{got:g} bits is not it. Hint: each group of {group_size} numbers keeps "
                                  f"{group_size} codes of {bits} bits plus two float16 numbers (scale, minimum); "
                                  "divide the group's bits by its size.",
        not_a_number="answer with a number of bits (replace the None)")
