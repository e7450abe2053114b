"""AWQ: alpha = 0 is RTN, the search never loses on its own data, salient channels get the scale, RTN beaten."""

import pytest
import torch
from torch import nn

from qlearn import PerGroup, QuantLinear, quantize_model
from qlearn.methods import awq, folding, rtn
from qlearn.methods.awq import AWQLinear

from .toys import output_error


def outlier_toy(out=64, inp=512, tokens=1536, n_salient=5, factor=50.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, inp, generator=g)
    salient = torch.randperm(inp, generator=g)[:n_salient]
    X[:, salient] *= factor
    W = torch.randn(out, inp, generator=g) * 0.05
    return W, X[:1024], X[1024:], salient


def test_alpha_zero_is_rtn_and_search_never_loses_on_calibration():
    W, X, _, _ = outlier_toy()
    qw = awq.quantize_weight(W, X, bits=3, group_size=64, clip=False)
    rtn_hat = rtn.quantize_weight(W, bits=3, group_size=64).dequantize()
    assert qw.alphas[0] == 0.0 and len(qw.alphas) == len(qw.losses) == 20
    scored = awq._search_tokens(X)  # the losses are scored on at most ~512 evenly spaced tokens
    assert awq.CLIP_TOKENS <= scored.shape[0] < 2 * awq.CLIP_TOKENS or scored.shape[0] == X.shape[0]
    assert qw.losses[0] == pytest.approx(awq.output_mse(scored, W, rtn_hat), rel=1e-5)
    assert awq.output_mse(scored, W, qw.dequantize()) == pytest.approx(min(qw.losses), rel=1e-4)
    assert min(qw.losses) <= qw.losses[0]
    assert qw.alpha == qw.alphas[qw.losses.index(min(qw.losses))]


def test_dequantize_is_grid_of_scaled_weight_divided_by_scale():
    W, X, _, _ = outlier_toy()
    qw = awq.quantize_weight(W, X, bits=4, group_size=128, clip=False)
    s = qw.input_scale
    assert s.shape == (512,) and float(s.max() * s.min()) == pytest.approx(1.0, rel=1e-4)
    expected = rtn.quantize_weight(W * s, bits=4, group_size=128).dequantize() / s
    assert torch.allclose(qw.dequantize(), expected, rtol=1e-6, atol=1e-7)
    assert qw.nbytes == rtn.quantize_weight(W, bits=4, group_size=128).nbytes + 4 * 512  # s is stored


def test_salient_channels_get_the_largest_scales():
    W, X, _, salient = outlier_toy()
    qw = awq.quantize_weight(W, X, bits=3, group_size=64)
    assert qw.alpha > 0
    assert set(torch.topk(qw.input_scale, len(salient)).indices.tolist()) == set(salient.tolist())


@pytest.mark.parametrize("bits,group_size", [(4, 128), (3, 64), (4, None)], ids=["4bit-g128", "3bit-g64", "4bit-row"])
@pytest.mark.parametrize("clip", [False, True], ids=["no-clip", "clip"])
def test_beats_rtn_on_held_out_tokens_with_outlier_channels(bits, group_size, clip):
    W, X_cal, X_test, _ = outlier_toy()
    qw = awq.quantize_weight(W, X_cal, bits=bits, group_size=group_size, clip=clip)
    R_hat = rtn.quantize_weight(W, bits=bits, group_size=group_size).dequantize()
    assert output_error(X_test, W, qw.dequantize()) < 0.7 * output_error(X_test, W, R_hat)


def test_clip_search_shrinks_some_groups_and_keeps_the_rest():
    W, X, _, _ = outlier_toy()
    W[0, 0] = 2.0  # one outlier weight: clipping it helps its group
    c = awq._search_clip(W, X, bits=3, group_size=64, symmetric=False, n_grid=20)
    full = W.reshape(64, -1, 64).abs().amax(-1, keepdim=True)
    assert c.shape == full.shape and bool((c <= full).all()) and bool((c >= 0.5 * full).all())
    assert float(c[0, 0, 0]) < float(full[0, 0, 0])


def test_clip_search_scores_every_token_through_the_group_gram():
    """The Gram form d C d^T picks, per (row, group), the clip a brute-force loop over every token picks."""
    W, X, _, _ = outlier_toy(out=8, inp=128, tokens=2000)  # 1024 calibration tokens, more than CLIP_TOKENS
    W[0, 0] = 2.0
    bits, g, n_grid = 3, 32, 20
    c = awq._search_clip(W, X, bits=bits, group_size=g, symmetric=False, n_grid=n_grid)
    Wg, Xg = W.reshape(8, -1, g), X.reshape(X.shape[0], -1, g)
    full = Wg.abs().amax(-1, keepdim=True)
    errors = []
    for i in range(n_grid // 2):
        cand = full * (1 - i / n_grid)
        Wc = torch.maximum(torch.minimum(Wg, cand), -cand).reshape(W.shape)
        dW = (rtn.quantize_weight(Wc, bits=bits, group_size=g).dequantize() - W).reshape(Wg.shape)
        errors.append(torch.einsum("tgk,ogk->tog", Xg, dW).square().mean(0))  # (out, groups), every token
    choice = torch.stack(errors).argmin(0)  # (out, groups)
    expected = full[..., 0] * (1 - choice / n_grid)
    assert torch.allclose(c[..., 0], expected, rtol=1e-6)
    assert bool((choice > 0).any())  # some group really is clipped


def test_round_groups_is_the_rtn_grid():
    W, _, _, _ = outlier_toy()
    for symmetric in (False, True):
        expected = rtn.quantize_weight(W, bits=3, group_size=64, symmetric=symmetric).dequantize()
        got = awq._round_groups(W.reshape(64, -1, 64), 3, symmetric).reshape(W.shape)
        assert torch.equal(got, expected)


def test_minmax_params_rejects_bad_arguments():
    from qlearn.core.primitives import minmax_params

    W = torch.randn(4, 2, 8)
    with pytest.raises(TypeError, match="float32"):
        minmax_params(W.double(), -1, 4, False)
    with pytest.raises(ValueError, match="bits"):
        minmax_params(W, -1, 9, False)


# ---- awq_model (merged) ----

def _llama(kv_heads=4, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _token_batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 96, (2, 16), generator=g)} for _ in range(n)]


@pytest.fixture(scope="module")
def minilm():
    from qlearn.data.models import load_model

    return load_model()


def _linears(model):
    return [n for n, m in model.named_modules() if type(m) is nn.Linear]


def _fold_random_scales(model, pairs, seed=0):
    g = torch.Generator().manual_seed(seed)
    for previous, layers in pairs:
        d = model.get_submodule(layers[0]).in_features
        s = torch.exp(torch.randn(d, generator=g))  # positive, spread over about e^+-2
        with torch.no_grad():
            folding.fold(model, previous, layers, s)


def test_llama_pairs_found_from_names_and_folding_keeps_logits():
    model = _llama()
    pairs = folding.find_pairs(model, _linears(model))
    found = {(p.split(".")[-1], tuple(c.split(".")[-1] for c in ls)) for p, ls in pairs}
    assert found == {("input_layernorm", ("q_proj", "k_proj", "v_proj")), ("post_attention_layernorm",
                     ("gate_proj", "up_proj")), ("v_proj", ("o_proj",)), ("up_proj", ("down_proj",))}
    assert len(pairs) == 4 * 2
    ids = _token_batches(1)[0]["input_ids"]
    with torch.no_grad():
        before = model(ids).logits
        _fold_random_scales(model, pairs)
        after = model(ids).logits
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4)


def test_grouped_query_attention_does_not_fold_v_into_o():
    model = _llama(kv_heads=2)
    pairs = folding.find_pairs(model, _linears(model))
    assert not any(p.endswith("v_proj") for p, _ in pairs) and len(pairs) == 3 * 2


def test_minilm_folds_value_into_attention_output_and_keeps_embeddings(minilm):
    model, tokenizer = minilm
    import copy

    model = copy.deepcopy(model)
    pairs = folding.find_pairs(model, _linears(model))
    assert [(p.split(".", 3)[-1], [c.split(".", 3)[-1] for c in ls]) for p, ls in pairs] == \
        [("attention.self.value", ["attention.output.dense"])] * 6
    batch = tokenizer(["A cat sits on the mat.", "Stocks fell sharply today."], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).last_hidden_state
        _fold_random_scales(model, pairs)
        after = model(**batch).last_hidden_state
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4)


def test_awq_on_tiny_llama_folds_where_it_can_and_beats_rtn():
    batches, test_ids = _token_batches(4), _token_batches(1, seed=7)[0]["input_ids"]
    reference_model, rtn_model, model = _llama(), _llama(), _llama()
    with torch.no_grad():
        reference = reference_model(test_ids).logits
    quantize_model(rtn_model, bits=3, granularity=PerGroup(32), method="rtn", symmetric=False)
    report = quantize_model(model, bits=3, granularity=PerGroup(32), method="awq", calibration=batches)
    assert isinstance(model.model.layers[0].self_attn.q_proj, QuantLinear)
    assert not isinstance(model.model.layers[0].self_attn.q_proj, AWQLinear)
    assert isinstance(model.lm_head, AWQLinear)  # nothing before the head feeds only the head
    assert "folded into model.layers.1.mlp.up_proj" in report.notes["model.layers.1.mlp.down_proj"]
    assert "kept on the layer" in report.notes["lm_head"]
    with torch.no_grad():
        err_awq = (model(test_ids).logits - reference).norm()
        err_rtn = (rtn_model(test_ids).logits - reference).norm()
    assert err_awq < err_rtn


def test_a_fold_that_changes_the_model_is_refused_and_undone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    x = torch.randn(8, 32)
    before = model(x).detach()
    with pytest.raises(ValueError, match="changed the model's output"):
        quantize_model(model, bits=4, granularity=PerGroup(32), method="awq", calibration=[x], pairs=[("0", ["2"])])
    assert all(type(m) in (nn.Linear, nn.GELU) for m in model)
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("pairs,err", [("0", TypeError), ([("0", "2")], TypeError), ([("1", ["2"])], ValueError),
                                       ([("0", ["9"])], ValueError)],
                         ids=["not-a-list", "layers-str", "no-weight", "unknown-layer"])
def test_bad_pairs(pairs, err):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    with pytest.raises(err):
        quantize_model(model, bits=4, granularity=PerGroup(32), method="awq", calibration=[torch.randn(8, 32)],
                       pairs=pairs)
