"""The offline MiniLM: it loads from the installed package, embeds, and casts."""

import pytest
import torch

from qlearn.core import dtypes
from qlearn.data import models


@pytest.fixture(scope="module")
def minilm():
    return models.load_model()


def test_minilm_loads_offline_and_embeds(minilm):
    model, tokenizer = minilm
    assert sum(p.numel() for p in model.parameters()) > 20_000_000
    emb = models.embed(model, tokenizer, list(models.SENTENCES))
    assert emb.shape == (len(models.SENTENCES), 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(models.SENTENCES)), atol=1e-5)
    sim = emb @ emb.T
    assert int(sim[0, 1:].argmax()) == 0  # the two cat sentences are nearest neighbours


def test_weight_matches_model(minilm):
    model, _ = minilm
    w = models.minilm_weight("encoder.layer.0.attention.self.query")
    assert torch.equal(w, model.encoder.layer[0].attention.self.query.weight.float())
    with pytest.raises(ValueError, match="no weight named"):
        models.minilm_weight("nope")


def test_activation_shape(minilm):
    x = models.minilm_activation(*minilm)
    assert x.ndim == 2 and x.shape[1] == 1536 and bool(torch.isfinite(x).all())


def test_bf16_load_is_close_and_half_the_memory(minilm):
    model, tokenizer = minilm
    model16, _ = models.load_model(dtype=torch.bfloat16)
    assert model16.dtype == torch.bfloat16
    assert dtypes.model_memory_bytes(model16) == dtypes.model_memory_bytes(model, torch.bfloat16)
    assert dtypes.model_memory_bytes(model16) < 0.51 * dtypes.model_memory_bytes(model)
    a = models.embed(model, tokenizer, models.SENTENCES[:2])
    b = models.embed(model16, tokenizer, models.SENTENCES[:2])
    assert float((a * b).sum(-1).min()) > 0.99


def test_bad_arguments():
    with pytest.raises(TypeError):
        models.load_model(model_id="")
    with pytest.raises(TypeError):
        models.load_model(dtype=torch.int8)
    with pytest.raises(TypeError):
        models.embed(None, None, [])
