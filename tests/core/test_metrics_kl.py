"""kl_divergence and top1_agreement against a by-hand computation on a tiny causal LM."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qlearn.core import metrics


class TinyLM(nn.Module):
    """A causal toy LM: logits at t = head(mean of the embeddings of tokens 0..t)."""

    def __init__(self, vocab=11, dim=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, vocab)

    def get_input_embeddings(self) -> nn.Embedding:  # what a Hugging Face causal LM has (metrics checks it)
        return self.embed

    def forward(self, ids):
        e = self.embed(ids)  # (1, w, dim)
        prefix = e.cumsum(1) / torch.arange(1, ids.shape[1] + 1)[None, :, None]  # (1, w, dim)
        return SimpleNamespace(logits=self.head(prefix))  # (1, w, vocab)


def tokenizer(text, return_tensors="pt"):
    """Characters to ids 0..10 (a stand-in with the Hugging Face call signature)."""
    return {"input_ids": torch.tensor([[ord(c) % 11 for c in text]])}


TEXT = "the quick brown fox jumps over the lazy dog"


def by_hand(ref, model, window):
    """KL and top-1 agreement with Python floats, position by position."""
    ids = tokenizer(TEXT)["input_ids"]
    kls, same = [], []
    for begin in range(0, ids.shape[1], window):
        chunk = ids[:, begin:begin + window]
        with torch.no_grad():
            a, b = ref(chunk).logits[0].double(), model(chunk).logits[0].double()
        for t in range(chunk.shape[1]):
            za = math.log(sum(math.exp(v) for v in a[t].tolist()))
            zb = math.log(sum(math.exp(v) for v in b[t].tolist()))
            kls.append(sum(math.exp(x - za) * ((x - za) - (y - zb)) for x, y in zip(a[t].tolist(), b[t].tolist())))
            same.append(int(a[t].argmax()) == int(b[t].argmax()))
    return sum(kls) / len(kls), sum(same) / len(same)


@pytest.mark.parametrize("window", [5, 16, 100], ids=["w5", "w16", "w100"])
def test_kl_and_top1_equal_the_by_hand_computation(window):
    ref, model = TinyLM(seed=0), TinyLM(seed=0)
    with torch.no_grad():
        model.head.weight.add_(0.3 * torch.randn_like(model.head.weight))  # a "quantized" copy
    kl = metrics.kl_divergence(ref, model, tokenizer, TEXT, window=window, progress=False)
    top1 = metrics.top1_agreement(ref, model, tokenizer, TEXT, window=window, progress=False)
    kl_hand, top1_hand = by_hand(ref, model, window)
    assert kl > 0.01 and math.isclose(kl, kl_hand, rel_tol=1e-9)
    assert 0 < top1 < 1 and top1 == top1_hand
    reverse = metrics.kl_divergence(model, ref, tokenizer, TEXT, window=window, progress=False)
    assert not math.isclose(kl, reverse, rel_tol=1e-3)  # KL is not symmetric: the order of the models matters


def test_identical_models_and_bad_arguments():
    ref = TinyLM()
    assert metrics.kl_divergence(ref, ref, tokenizer, TEXT, window=8, progress=False) == 0.0
    assert metrics.top1_agreement(ref, ref, tokenizer, TEXT, window=8, progress=False) == 1.0
    with pytest.raises(TypeError, match="reference must be"):
        metrics.kl_divergence("gpt", ref, tokenizer, TEXT, progress=False)
    with pytest.raises(ValueError, match="window"):
        metrics.top1_agreement(ref, ref, tokenizer, TEXT, window=0, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        metrics.kl_divergence(ref, ref, tokenizer, "  ", progress=False)
