"""Hadamard matrices and rotate_model: orthonormal, the fast transform equals the matrix, the rotated model computes
the same logits (a tiny Llama here, the bundled SmolLM2 under real_llm), and the rotation flattens outliers."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

import qlearn
from qlearn.methods import rotation


@pytest.mark.parametrize("n", [1, 2, 64, 96, 576, 1536])
@pytest.mark.parametrize("random_signs", [False, True], ids=["plain", "random_signs"])
def test_hadamard_is_orthonormal_and_the_fast_transform_equals_it(n, random_signs):
    H = rotation.hadamard(n, random_signs=random_signs, seed=3)
    assert torch.allclose(H @ H.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    block = n & -n
    assert torch.equal(H.abs() > 0, torch.block_diag(*[torch.ones(block, block)] * (n // block)).bool())
    assert torch.allclose(H.abs()[H != 0], torch.full((1,), block ** -0.5, dtype=torch.float64))
    x = torch.randn(2, 3, n, dtype=torch.float64)
    assert torch.allclose(rotation.hadamard_transform(x), x @ rotation.hadamard(n), atol=1e-12)


def test_hadamard_spreads_an_outlier():
    x = torch.zeros(64, dtype=torch.float64)
    x[5] = 8.0
    y = x @ rotation.hadamard(64)
    assert torch.allclose(y.abs(), torch.full((64,), 1.0, dtype=torch.float64))  # 8 / sqrt(64) everywhere


def tiny_llama(tied=True):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=120, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.5 * torch.randn_like(p))  # gains far from 1: folding must matter
    return model


@pytest.mark.parametrize("tied", [True, False], ids=["tied_head", "own_head"])
def test_rotated_tiny_llama_computes_the_same_logits(tied):
    model = tiny_llama(tied)
    ids = torch.randint(0, 120, (2, 12))
    with torch.no_grad():
        ref = model(ids).logits
        rotation.rotate_model(model)
        out = model(ids).logits
    assert float((out - ref).norm() / ref.norm()) < 1e-5
    layer = model.model.layers[0]
    assert isinstance(layer.mlp.down_proj, rotation.OnlineHadamard)
    assert torch.equal(layer.input_layernorm.weight, torch.ones(96))
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    with pytest.raises(ValueError, match="already rotated"):
        rotation.rotate_model(model)
    # the down_proj inside stays an nn.Linear: quantize_model replaces it under its new name
    report = qlearn.quantize_model(model, bits=8)
    assert "model.layers.0.mlp.down_proj.linear" in report.replaced


def test_rotate_model_rejects_a_model_of_another_layout():
    with pytest.raises(ValueError, match="does not match the layout"):
        rotation.rotate_model(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(TypeError, match="DecoderLayout"):
        rotation.rotate_model(tiny_llama(), layout={"layers": "model.layers"})


def test_a_refused_rotation_leaves_the_model_untouched():
    model = tiny_llama(tied=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for bad in (dict(seed=2.5), dict(random_signs=1), dict(layout=rotation.DecoderLayout(online="mlp.act_fn"))):
        with pytest.raises((TypeError, ValueError)):
            rotation.rotate_model(model, **bad)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(TypeError, match="module name"):
        rotation.DecoderLayout(layers=None)


def test_the_fast_transform_of_float16_near_its_largest_value_stays_finite():
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)).half()
    x[:, 0] = 65504.0  # float16's partial sums in the butterflies would overflow
    y = rotation.hadamard_transform(x)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    assert torch.allclose(y.double(), x.double() @ rotation.hadamard(64), rtol=1e-3, atol=1.0)


@pytest.mark.real_llm
def test_rotated_smollm2_logits_and_flatter_hidden_states(llm_cache):
    from qlearn.data import llm

    model, tokenizer = llm.load_llm(progress=False)
    ids = tokenizer(llm.course_text("eval")[:600], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        rotation.rotate_model(model)
        rotated = model(ids, output_hidden_states=True)
    assert float((rotated.logits - out.logits).norm() / out.logits.norm()) < 1e-4
    h, h_rot = out.hidden_states[15][0], rotated.hidden_states[15][0]  # (tokens, 576) the residual stream
    peak = lambda t: float((t.abs().amax(-1) / t.abs().median(-1).values).median())  # noqa: E731
    assert peak(h_rot) < peak(h) / 2  # max / median per token: the outlier channels are spread out
