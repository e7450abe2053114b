"""Notebook 13's checks: the right answer in every numeric form passes, the known mistakes fail with their hint."""

import pytest
import torch

from qlearn.compression.prune import nm_mask
from qlearn.compression.sparse import sparse_weight_bytes
from qlearn.exercises import nb13
from qlearn.methods import wanda

from .answer_forms import NOT_NUMBERS, computed_forms, numeric_forms, rounded


def _layer():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 32, generator=g) * torch.linspace(0.2, 2.0, 32)
    X[:, [3, 17]] *= 20.0  # two outlier features
    return 0.1 * torch.randn(16, 32, generator=g), X


W, X = _layer()
KEEP = wanda.prune_weight(W, X, pattern="2:4", return_mask=True)[1]
RESCUES = int((KEEP & ~nm_mask(W.abs(), 2, 4)).sum())


def test_wanda_rescues_counts_by_hand():
    assert 0 < RESCUES < 16 * 16 and nb13.wanda_rescues(W, X) == RESCUES


@pytest.mark.parametrize("answer", numeric_forms(RESCUES))
def test_wanda_rescues_right(answer):
    assert nb13.check_wanda_rescues(W, X, answer)


@pytest.mark.parametrize("answer, hint", [(2 * RESCUES, "differs twice"), (RESCUES / W.numel(), "fraction"),
                                          (RESCUES + 1, "keep-mask")], ids=["both-sides", "fraction", "off-by-one"])
def test_wanda_rescues_mistakes(answer, hint):
    fb = nb13.check_wanda_rescues(W, X, answer)
    assert not fb and hint in fb.message


BYTES = nb13.two_four_bytes(576, 1536)


def test_two_four_bytes_is_the_storage_count():
    W24 = torch.randn(576, 1536).half()
    W24 = W24 * nm_mask(W24.float().abs(), 2, 4)
    assert BYTES == sparse_weight_bytes(W24, "2:4") == 576 * 768 * 2 + 576 * 768 // 4


@pytest.mark.parametrize("answer", numeric_forms(BYTES))
def test_two_four_bytes_right(answer):
    assert nb13.check_2to4_bytes(576, 1536, answer)


@pytest.mark.parametrize("answer, hint", [(576 * 1536 * 2, "dense"), (576 * 768 * 2, "values alone"),
                                          (576 * 768 * 2 + 576 * 1536 // 4, "every weight"), (8 * BYTES, "bits")],
                         ids=["dense", "values-only", "index-per-weight", "bits"])
def test_two_four_bytes_mistakes(answer, hint):
    fb = nb13.check_2to4_bytes(576, 1536, answer)
    assert not fb and hint in fb.message


SHARE = (40.0 - 31.0) / (40.0 - 25.0)


@pytest.mark.parametrize("answer", [*computed_forms(SHARE), pytest.param(rounded(SHARE, 3), id="3-digits")])
def test_recovered_share_right(answer):
    assert nb13.check_recovered_share(25.0, 40.0, 31.0, answer)


@pytest.mark.parametrize("answer, hint", [(100 * SHARE, "percentage"), (1 - SHARE, "still left"),
                                          (9 / 40, "rise"), (31 / 40, "ratio")],
                         ids=["percent", "left", "over-pruned", "ratio"])
def test_recovered_share_mistakes(answer, hint):
    fb = nb13.check_recovered_share(25.0, 40.0, 31.0, answer)
    assert not fb and hint in fb.message


@pytest.mark.parametrize("answer", NOT_NUMBERS, ids=repr)
def test_checks_reject_non_numbers(answer):
    assert not nb13.check_wanda_rescues(W, X, answer)
    assert not nb13.check_2to4_bytes(576, 1536, answer)
    assert not nb13.check_recovered_share(25.0, 40.0, 31.0, answer)


def test_pruned_must_be_above_dense():
    with pytest.raises(ValueError, match="must be above dense"):
        nb13.check_recovered_share(30.0, 25.0, 26.0, 0.5)
