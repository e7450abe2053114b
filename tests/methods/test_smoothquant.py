"""SmoothQuant: the smoothing factors (torchao's observer as the oracle) and smooth_model on MiniLM and Llama."""

import copy

import pytest
import torch
from torch import nn

from qlearn.core.granularity import PerChannel
from qlearn.core.primitives import fake_quantize
from qlearn.methods.smoothquant import default_pairs, input_absmax, smooth_model, smoothing_factors


def outlier_input(tokens=64, d_in=32, d_out=16):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(tokens, d_in, generator=g)
    X[:, [1, 7]] *= 40.0
    W = 0.1 * torch.randn(d_out, d_in, generator=g)
    return X, W


def test_factors_formula_and_max_over_every_weight():
    X, W = outlier_input()
    W2 = 3.0 * torch.randn(8, 32)
    a = X.abs().amax(0)
    s = smoothing_factors(a, [W, W2], alpha=0.4)
    w = torch.maximum(W.abs().amax(0), W2.abs().amax(0))
    torch.testing.assert_close(s, a.pow(0.4) / w.pow(0.6))
    torch.testing.assert_close(smoothing_factors(a, W, 1.0), a)
    torch.testing.assert_close(smoothing_factors(a, W, 0.0), 1.0 / W.abs().amax(0))


def test_zero_channels_give_finite_positive_factors():
    a = torch.tensor([0.0, 2.0, 0.0])
    W = torch.tensor([[0.0, 1.0, 0.5]])
    s = smoothing_factors(a, W, 0.5)
    assert bool(torch.isfinite(s).all()) and bool((s > 0).all())


def test_factors_match_torchao_observer():
    """torchao adds eps = 1.2e-7 where we clamp at 1e-5: the same factors where every max is >> 1e-5."""
    core = pytest.importorskip("torchao.prototype.smoothquant.core")
    X, W = outlier_input()
    obs = core.SmoothQuantObserver(W, alpha=0.5)
    obs(X[:40])
    obs(X[40:])
    s_ao = obs.calculate_qparams()[0]
    torch.testing.assert_close(smoothing_factors(X.abs().amax(0), W, 0.5), s_ao, rtol=1e-5, atol=0)


def test_smoothing_keeps_the_product_and_helps_per_tensor_int8():
    X, W = outlier_input()
    s = smoothing_factors(X.abs().amax(0), W, 0.5)
    X_s, W_s = X / s, W * s  # (tokens, in), (out, in)
    torch.testing.assert_close(X_s @ W_s.t(), X @ W.t(), rtol=1e-5, atol=1e-4)

    def w8a8(X, W):
        return fake_quantize(X, 8, symmetric=True) @ fake_quantize(W, 8, True, PerChannel(0)).t()

    ref = X @ W.t()
    assert (w8a8(X_s, W_s) - ref).pow(2).mean() * 4 < (w8a8(X, W) - ref).pow(2).mean()


@pytest.fixture(scope="module")
def minilm():
    from qlearn.data.models import SENTENCES, load_model

    model, tok = load_model()
    batch = tok(list(SENTENCES), padding=True, return_tensors="pt")
    return model, batch


def test_smooth_minilm_keeps_the_output(minilm, one_thread):
    model, batch = minilm
    model = copy.deepcopy(model)
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
    pairs = default_pairs(model)
    assert len(pairs) == 12 and all(norm is None for norm, _ in pairs)  # post-LN: nothing folded
    before = input_absmax(model, ["encoder.layer.0.intermediate.dense"], [batch])
    groups = smooth_model(model, [batch], alpha=0.5)
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    after = input_absmax(model, ["encoder.layer.0.intermediate.dense"], [batch])
    ratio = {k: float(v.max() / v.median()) for k, v in (("before", before), ("after", after))
             for v in [v["encoder.layer.0.intermediate.dense"]]}
    assert ratio["after"] < ratio["before"] / 2  # the smoothed input has a flatter channel range
    assert groups[0].linears[0].endswith("attention.self.query")


def test_folding_into_a_post_ln_layernorm_is_refused_and_undone(minilm, one_thread):
    model, batch = minilm
    model = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = [("encoder.layer.0.attention.output.LayerNorm", ["encoder.layer.0.intermediate.dense"])]
    with pytest.raises(ValueError, match="residual"):
        smooth_model(model, [batch], alpha=0.5, pairs=pairs)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def tiny_llama():
    from transformers import LlamaConfig, LlamaModel

    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def test_smooth_tiny_llama_folds_into_rmsnorm(one_thread):
    model = tiny_llama()
    ids = [torch.randint(0, 100, (2, 8)), torch.randint(0, 100, (1, 5))]
    with torch.no_grad():
        ref = model(ids[0]).last_hidden_state
    norm_before = model.layers[0].input_layernorm.weight.clone()
    groups = smooth_model(model, ids, alpha=0.5)
    assert [g.norm for g in groups] == ["layers.0.input_layernorm", "layers.0.post_attention_layernorm",
                                        "layers.1.input_layernorm", "layers.1.post_attention_layernorm"]
    assert groups[1].linears == ("layers.0.mlp.gate_proj", "layers.0.mlp.up_proj")
    torch.testing.assert_close(model.layers[0].input_layernorm.weight, norm_before / groups[0].scale)
    with torch.no_grad():
        torch.testing.assert_close(model(ids[0]).last_hidden_state, ref, rtol=1e-4, atol=1e-4)


# ---- bad inputs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha, err", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                        (True, TypeError), ("0.5", TypeError)],
                         ids=["negative", "above-one", "nan", "bool", "str"])
def test_bad_alpha(alpha, err):
    X, W = outlier_input()
    with pytest.raises(err, match="alpha"):
        smoothing_factors(X.abs().amax(0), W, alpha)


@pytest.mark.parametrize("act, W, err", [
    (-torch.ones(32), torch.randn(4, 32), ValueError),
    (torch.ones(4, 32), torch.randn(4, 32), ValueError),
    (torch.full((32,), float("nan")), torch.randn(4, 32), ValueError),
    (torch.ones(32), torch.randn(4, 31), ValueError),
    (torch.ones(32), [], TypeError),
    (torch.ones(32), "W", TypeError),
    (torch.ones(0), torch.randn(4, 0), ValueError),
], ids=["negative-max", "act-2d", "act-nan", "in-mismatch", "no-weights", "W-str", "empty"])
def test_bad_factor_inputs(act, W, err):
    with pytest.raises(err):
        smoothing_factors(act, W)


def test_bad_smooth_model_inputs():
    model = tiny_llama()
    ids = torch.randint(0, 100, (2, 8))
    with pytest.raises(TypeError, match="iterable of batches"):
        smooth_model(model, ids)
    with pytest.raises(ValueError, match="empty"):
        smooth_model(model, [])
    with pytest.raises(ValueError, match="nn.Linear"):
        smooth_model(model, [ids], pairs=[(None, ["layers.0.nope"])])
    with pytest.raises(ValueError, match="norm or Linear module"):
        smooth_model(model, [ids], pairs=[("layers.0.mlp", ["layers.0.mlp.gate_proj"])])
    with pytest.raises(ValueError, match="found no .norm, .Linears.. pairs"):
        smooth_model(nn.Sequential(nn.Linear(4, 4)), [torch.randn(2, 4)])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        smooth_model("model", [ids])
