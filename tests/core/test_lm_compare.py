"""LMReference.score gives, from one pass of the compared model, the numbers of metrics.perplexity,
kl_divergence and top1_agreement (each of which runs its own passes), on a tiny causal LM."""

import math

import pytest

from qlearn.core import metrics
from qlearn.core.lm_compare import LMReference
from tests.core.test_metrics_kl import TEXT, TinyLM, tokenizer


@pytest.mark.parametrize("window", [5, 8, 43, 100], ids=lambda w: f"window{w}")
def test_scores_equal_the_three_metrics(window):
    ref, other = TinyLM(seed=0), TinyLM(seed=1)
    scores = LMReference(ref, tokenizer, TEXT, window).score(other)
    assert math.isclose(scores["kl"], metrics.kl_divergence(ref, other, tokenizer, TEXT, window, progress=False),
                        rel_tol=1e-12)
    assert scores["top1"] == metrics.top1_agreement(ref, other, tokenizer, TEXT, window, progress=False)
    assert math.isclose(scores["perplexity"], metrics.perplexity(other, tokenizer, TEXT, window, progress=False),
                        rel_tol=1e-6)  # perplexity takes the log-softmax in float32, LMReference in float64


def test_the_reference_against_itself():
    ref = TinyLM(seed=0)
    scores = LMReference(ref, tokenizer, TEXT, 8).score(ref)
    assert scores["kl"] == 0.0 and scores["top1"] == 1.0


def test_bad_inputs_are_refused():
    ref = TinyLM(seed=0)
    with pytest.raises(ValueError, match="text"):
        LMReference(ref, tokenizer, "  ", 8)
    with pytest.raises(ValueError):
        LMReference(ref, tokenizer, TEXT, 0)
    with pytest.raises(ValueError, match="shape"):
        LMReference(ref, tokenizer, TEXT, 8).score(TinyLM(vocab=12))
    with pytest.raises(TypeError):
        LMReference(ref, tokenizer, TEXT, 8).score("a model")
