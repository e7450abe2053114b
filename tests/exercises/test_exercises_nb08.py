"""Notebook 08's exercise checks: wrong answers, right answers in every numeric form, the known mistakes."""

import pytest
import torch

from .answer_forms import NOT_NUMBERS, numeric_forms
from qlearn.exercises import nb08
from qlearn.methods import nf4

RIGHT_BITS = nb08.double_quant_bits()


def test_double_quant_bits_is_what_nbytes_says():
    W = torch.randn(nb08.DQ_SHAPE)
    qw = nf4.quantize_weight(W, group_size=nb08.DQ_BLOCK, double_quant=True)
    assert 8 * qw.nbytes / W.numel() == pytest.approx(RIGHT_BITS)
    assert 4 + 8 / 128 < RIGHT_BITS < 4 + 32 / 128


@pytest.mark.parametrize("answer", numeric_forms(round(RIGHT_BITS, 6)))
def test_double_quant_bits_accepts_every_form(answer):
    assert nb08.check_double_quant_bits(answer)


@pytest.mark.parametrize("answer,hint", [(4.25, "without double"), (4 + 8 / 128, "forgets"), (4.5, "count")],
                         ids=["no-dq", "no-second-scale", "block64"])
def test_double_quant_bits_explains_mistakes(answer, hint):
    fb = nb08.check_double_quant_bits(answer)
    assert not fb and hint in fb.message


@pytest.mark.parametrize("answer", NOT_NUMBERS, ids=repr)
def test_double_quant_bits_rejects_non_numbers(answer):
    assert not nb08.check_double_quant_bits(answer)


def test_obs_update_right_and_wrong():
    assert nb08.check_obs_update(nb08.obs_update)

    def sign_flipped(W, j, q, U):
        W = W.clone()
        err = (W[:, j] - q) / U[j, j]
        W[:, j] = q
        W[:, j + 1:] += err[:, None] * U[j, j + 1:][None, :]
        return W

    def no_scale(W, j, q, U):
        W = W.clone()
        err = W[:, j] - q
        W[:, j] = q
        W[:, j + 1:] -= err[:, None] * U[j, j + 1:][None, :]
        return W

    def in_place(W, j, q, U):
        W[:, j] = q
        return W

    fb = nb08.check_obs_update(sign_flipped)
    assert not fb and "sign" in fb.message
    assert not nb08.check_obs_update(no_scale)
    fb = nb08.check_obs_update(in_place)
    assert not fb and "changed the W" in fb.message
    assert not nb08.check_obs_update(lambda W, j, q, U: 1 / 0)
    assert not nb08.check_obs_update("not a function")


def test_awq_scale_right_and_wrong():
    assert nb08.check_awq_scale(nb08.awq_scale)
    fb = nb08.check_awq_scale(lambda X, a: X.abs().mean(0).pow(a))
    assert not fb and "normalise" in fb.message
    assert not nb08.check_awq_scale(lambda X, a: X.abs().mean(1).pow(a))
    assert not nb08.check_awq_scale(lambda X, a: 1.0)
    assert not nb08.check_awq_scale(None)


def test_awq_scale_reference_is_what_awq_uses():
    from qlearn.methods import awq

    g = torch.Generator().manual_seed(0)
    W, X = torch.randn(8, 32, generator=g), torch.randn(64, 32, generator=g) * torch.rand(32, generator=g)
    qw = awq.quantize_weight(W, X, bits=3, group_size=None, clip=False)
    assert torch.allclose(qw.input_scale, nb08.awq_scale(X, qw.alpha))
