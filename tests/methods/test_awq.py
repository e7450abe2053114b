"""AWQ: alpha = 0 is RTN, the search never loses on its own data, salient channels get the scale, RTN beaten."""

import pytest
import torch

from qlearn.methods import awq, rtn

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
