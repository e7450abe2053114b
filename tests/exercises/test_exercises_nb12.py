"""Notebook 12's checks: the right answer in every numeric form passes, the known mistakes get their hints, and the
answers agree with the byte formula of `qlearn.methods.kv_cache`."""

from types import SimpleNamespace

import pytest

from qlearn.exercises import nb12
from qlearn.methods.kv_cache import kv_cache_bytes

from .answer_forms import NOT_NUMBERS, computed_forms, numeric_forms, rounded

TOKENS = 50_000  # not a power of two: the answer (6.10 GiB) is no round number that a mistake could share
GIB = 2 * 32 * 8 * 128 * 2 * TOKENS / 2 ** 30  # by hand: K and V, layers, kv heads, head_dim, float16 bytes


def test_the_cache_size_by_hand_is_the_formulas():
    assert kv_cache_bytes(nb12.MISTRAL_7B, TOKENS, None) == GIB * 2 ** 30 and round(GIB, 2) == 6.10


@pytest.mark.parametrize("answer", numeric_forms(GIB) + [pytest.param(rounded(GIB, 3), id="rounded")])
def test_cache_gib_right(answer):
    assert nb12.check_cache_gib(TOKENS, answer)


CACHE_WRONG = {"keys-only": (GIB / 2, "K and V"), "query-heads": (GIB * 4, "key-value heads"),
               "float32": (GIB * 2, "float32"), "GB": (GIB * 2 ** 30 / 1e9, "GiB"), "bytes": (GIB * 2 ** 30, "2**30"),
               "MiB": (GIB * 1024, "MiB"), "other": (5.0, "is not it")}


@pytest.mark.parametrize("answer, hint", CACHE_WRONG.values(), ids=CACHE_WRONG.keys())
def test_cache_gib_mistakes(answer, hint):
    fb = nb12.check_cache_gib(TOKENS, answer)
    assert not fb and hint in fb.message


@pytest.mark.parametrize("bits, group_size, expected", [(2, 32, 3.0), (4, 32, 5.0), (2, 128, 2.25), (4, 64, 4.5)])
def test_bits_per_value_matches_the_byte_formula(bits, group_size, expected):
    assert nb12.bits_per_value(bits, group_size) == expected
    one = SimpleNamespace(num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1, head_dim=group_size)
    nbytes = kv_cache_bytes(one, group_size, bits, group_size=group_size, residual_length=0)  # K and V, g x g each
    assert 8 * nbytes / (2 * group_size * group_size) == expected


@pytest.mark.parametrize("answer", computed_forms(2.5))
def test_bits_per_value_right(answer):
    assert nb12.check_bits_per_value(2, 64, answer)


BITS_WRONG = {"codes-only": (2, "codes only"), "one-float16": (2.25, "two"), "compression": (6.4, "compression"),
              "share": (2.5 / 16, "share"), "other": (4.0, "is not it")}


@pytest.mark.parametrize("answer, hint", BITS_WRONG.values(), ids=BITS_WRONG.keys())
def test_bits_per_value_mistakes(answer, hint):
    fb = nb12.check_bits_per_value(2, 64, answer)
    assert not fb and hint in fb.message


@pytest.mark.parametrize("answer", NOT_NUMBERS, ids=repr)
def test_checks_reject_non_numbers(answer):
    assert not nb12.check_cache_gib(TOKENS, answer) and not nb12.check_bits_per_value(2, 64, answer)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="bits"):
        nb12.bits_per_value(3, 32)
    with pytest.raises(ValueError, match="group_size"):
        nb12.bits_per_value(2, 0)
