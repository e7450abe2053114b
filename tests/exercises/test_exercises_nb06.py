"""Notebook 06's exercise checks: wrong answers, right answers, the known mistakes."""

import pytest
import torch

from qlearn.data import digits
from qlearn.exercises import nb06


def _function(forward, backward=lambda ctx, g: g):
    """A torch.autograd.Function subclass with the given forward(ctx, x) and backward(ctx, grad_output)."""
    return type("RoundAttempt", (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})


RIGHT = _function(lambda ctx, x: torch.round(x))


def test_round_ste_accepts_the_straight_through_round():
    fb = nb06.check_round_ste(RIGHT)
    assert fb and repr(fb).startswith("Correct!")


@pytest.mark.parametrize("attempt, says", [
    (_function(lambda ctx, x: torch.floor(x + 0.5)), "half to even"),   # differs from round on ties
    (_function(lambda ctx, x: torch.round(x).int()), "int32"),          # forward's fault, not backward's
    (_function(lambda ctx, x: 3), "int"),
    (_function(lambda ctx, x: x), "unchanged"),
    (_function(lambda ctx, x: torch.round(x)[:-1]), "shape"),
    (_function(lambda ctx, x: torch.round(x), lambda ctx, g: torch.zeros_like(g)), "backward"),
    (_function(lambda ctx, x: torch.round(x), lambda ctx, g: 1 / 0), "ZeroDivisionError"),
    (_function(lambda ctx, x: 1 / 0), "ZeroDivisionError"),
], ids=["floor-plus-half", "int-forward", "python-int", "identity", "wrong-shape", "zero-grad", "backward-raises",
        "forward-raises"])
def test_round_ste_rejects_known_mistakes_and_blames_the_right_part(attempt, says):
    fb = nb06.check_round_ste(attempt)
    assert not fb and says in fb.message
    if says in ("half to even", "int32", "int", "unchanged", "shape"):
        assert "backward" not in fb.message.split(".")[0]


def test_round_ste_rejects_things_that_are_not_a_function_class():
    assert not nb06.check_round_ste(torch.round)
    assert not nb06.check_round_ste(RIGHT())


def test_observer_choice():
    x = nb06.outlier_tensor(seed=1)
    assert nb06.check_observer_choice(x, 3, "mse")
    assert not nb06.check_observer_choice(x, 3, "minmax")
    assert not nb06.check_observer_choice(x, 3, "kmeans")
    assert not nb06.check_observer_choice(x, 3, ["mse"])


def test_lsq_init():
    W = digits.mlp(16)[2].weight.detach()
    right = 2 * W.abs().mean(dim=1, keepdim=True) / 3 ** 0.5
    assert nb06.check_lsq_init(W, 3, right)
    assert "Correct" in repr(nb06.check_lsq_init(W, 3, right))
    assert nb06.check_lsq_init(W, 3, right.double())
    assert not nb06.check_lsq_init(W, 3, right * 2)
    fb = nb06.check_lsq_init(W, 3, right.flatten())
    assert not fb and "keepdim" in fb.message
    assert not nb06.check_lsq_init(W, 3, None)
