"""Every weight method refuses bad input with a clear TypeError / ValueError, never a crash or a NaN."""

import pytest
import torch

from qlearn.methods import awq, gptq, hqq, nf4, rtn

W = torch.randn(8, 64)
X = torch.randn(32, 64)
METHODS = {"rtn": rtn, "nf4": nf4, "hqq": hqq, "gptq": gptq, "awq": awq}
NEEDS_X = {"gptq", "awq"}


def call(name, W=W, X=X, **kwargs):
    if name == "nf4":
        kwargs.setdefault("group_size", 32)
    else:
        kwargs.setdefault("group_size", 32)
    return METHODS[name].quantize_weight(W, X, **kwargs)


BAD_W = [
    ("list", [[1.0, 2.0]], TypeError, "torch.Tensor"),
    ("int", torch.ones(8, 64, dtype=torch.int32), TypeError, "floating-point"),
    ("1-d", torch.randn(64), ValueError, "2-D"),
    ("3-d", torch.randn(2, 8, 64), ValueError, "2-D"),
    ("empty", torch.randn(0, 64), ValueError, "empty"),
    ("nan", torch.full((8, 64), float("nan")), ValueError, "NaN"),
    ("inf", torch.full((8, 64), float("inf")), ValueError, "NaN or inf"),
]


@pytest.mark.parametrize("name", METHODS, ids=str)
@pytest.mark.parametrize("case,bad,error,match", BAD_W, ids=[c[0] for c in BAD_W])
def test_bad_weight(name, case, bad, error, match):
    with pytest.raises(error, match=match):
        call(name, W=bad)


BAD_X = [
    ("wrong-width", torch.randn(32, 63), ValueError, r"\(tokens, 64\)"),
    ("1-d", torch.randn(64), ValueError, r"\(tokens, 64\)"),
    ("empty", torch.randn(0, 64), ValueError, "empty"),
    ("nan", torch.full((32, 64), float("nan")), ValueError, "NaN"),
    ("int", torch.ones(32, 64, dtype=torch.int64), TypeError, "floating-point"),
]


@pytest.mark.parametrize("name", METHODS, ids=str)
@pytest.mark.parametrize("case,bad,error,match", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_inputs_x(name, case, bad, error, match):
    with pytest.raises(error, match=match):
        call(name, X=bad)


@pytest.mark.parametrize("name", sorted(NEEDS_X), ids=str)
def test_methods_that_need_data_say_so(name):
    with pytest.raises(ValueError, match="needs calibration inputs X"):
        call(name, X=None)


@pytest.mark.parametrize("name", sorted(set(METHODS) - NEEDS_X), ids=str)
def test_data_free_methods_accept_no_x(name):
    assert call(name, X=None).dequantize().isfinite().all()


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"nf4"}), ids=str)
@pytest.mark.parametrize("bits,error", [(1, ValueError), (9, ValueError), (4.0, TypeError), (True, TypeError)],
                         ids=["1", "9", "float", "bool"])
def test_bits_from_2_to_8(name, bits, error):
    with pytest.raises(error, match="bits"):
        call(name, bits=bits)


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"nf4"}), ids=str)
@pytest.mark.parametrize("group_size,match", [(48, "does not divide"), (0, "positive int"), (-32, "positive int"),
                                              (32.0, "positive int")], ids=["48", "0", "negative", "float"])
def test_group_size_must_divide(name, group_size, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(name, group_size=group_size)


@pytest.mark.parametrize("block_size", [48, 0, None], ids=["48", "0", "None"])
def test_nf4_block_size(block_size):
    with pytest.raises((ValueError, TypeError), match="group_size"):
        nf4.quantize_weight(W, group_size=block_size)


BAD_OPTIONS = [
    ("gptq", {"damp": -0.1}, ValueError, "damp"),
    ("gptq", {"damp": "0.01"}, TypeError, "damp"),
    ("gptq", {"block_size": 0}, ValueError, "block_size"),
    ("gptq", {"act_order": 1}, TypeError, "act_order"),
    ("gptq", {"symmetric": "yes"}, TypeError, "symmetric"),
    ("awq", {"n_grid": 0}, ValueError, "n_grid"),
    ("awq", {"n_grid": 2.5}, ValueError, "n_grid"),
    ("awq", {"clip": None}, TypeError, "clip"),
    ("hqq", {"iters": 0}, ValueError, "iters"),
    ("hqq", {"lp_norm": 0.0}, ValueError, "lp_norm"),
    ("hqq", {"lp_norm": 1.5}, ValueError, "lp_norm"),
    ("hqq", {"beta": 0.0}, ValueError, "beta"),
    ("hqq", {"kappa": 0.9}, ValueError, "kappa"),
    ("hqq", {"beta": float("nan")}, ValueError, "beta"),
    ("nf4", {"double_quant": "no"}, TypeError, "double_quant"),
    ("rtn", {"symmetric": None}, TypeError, "symmetric"),
]


@pytest.mark.parametrize("name,kwargs,error,match", BAD_OPTIONS,
                         ids=[f"{n}-{k}={v}" for n, o, _, _ in BAD_OPTIONS for k, v in o.items()])
def test_bad_options(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        call(name, **kwargs)


@pytest.mark.parametrize("name", METHODS, ids=str)
def test_constant_and_zero_weights_give_finite_results(name):
    for W_const in (torch.zeros(8, 64), torch.full((8, 64), 0.5)):
        W_hat = call(name, W=W_const).dequantize()
        assert bool(W_hat.isfinite().all())
        assert torch.allclose(W_hat, W_const, atol=1e-3)


@pytest.mark.parametrize("name", METHODS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_weights_dequantize_to_their_dtype(name, dtype):
    W_low = W.to(dtype)
    qw = call(name, W=W_low, X=X.to(dtype))
    assert qw.dequantize().dtype == dtype and qw.dequantize().shape == W.shape
    assert float((qw.dequantize().float() - W_low.float()).abs().mean()) < 0.2 * float(W.abs().mean())
