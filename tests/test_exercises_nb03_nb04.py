"""The exercise checks of notebooks 03 and 04 accept the right answers and reject wrong ones."""

import pytest

from qlearn import PerChannel, PerGroup, PerTensor
from qlearn.exercises import nb03, nb04
from qlearn.sweep import roundtrip
from qlearn.tensors import sample_tensor


def _says(capsys):
    return capsys.readouterr().out


def test_nb03_scale_zero_point(capsys):
    nb03.check_scale_zero_point((1.8 + 0.6) / 255, -128 - round(-0.6 / ((1.8 + 0.6) / 255)))
    assert _says(capsys).startswith("Correct")
    for scale, zp in [((1.8 + 0.6) / 256, -64), ((1.8 + 0.6) / 255, -63), (None, -64), ("a", 1)]:
        nb03.check_scale_zero_point(scale, zp)
        assert not _says(capsys).startswith("Correct")


def test_nb03_symmetric_code(capsys):
    nb03.check_symmetric_code(1.8 / 7, round(0.4 / (1.8 / 7)))
    assert _says(capsys).startswith("Correct")
    nb03.check_symmetric_code(1.8 / 7.5, 2)
    assert "qmax" in _says(capsys)
    nb03.check_symmetric_code(1.8 / 7, 1)
    assert _says(capsys).startswith("Not yet")


def test_nb03_relu_ratio(capsys):
    x = sample_tensor("relu")
    ratio = roundtrip(x, 4, True)[1]["mse"] / roundtrip(x, 4, False)[1]["mse"]
    nb03.check_relu_ratio(ratio)
    assert _says(capsys).startswith("Correct")
    nb03.check_relu_ratio(1 / ratio)
    assert "other way round" in _says(capsys)
    nb03.check_relu_ratio(None)
    assert _says(capsys).startswith("Not answered")


def test_nb04_effective_bits(capsys):
    nb04.check_effective_bits(3.5)
    assert _says(capsys).startswith("Correct")
    nb04.check_effective_bits(3.25)
    assert "zero point" in _says(capsys)
    nb04.check_effective_bits("3.5")
    assert _says(capsys).startswith("Not yet")


@pytest.mark.parametrize("bits, granularity", [(4, PerGroup(64)), (4, PerGroup(128)), (4, PerChannel(0)),
                                               (3, PerGroup(32)), (8, PerTensor()), (4, PerGroup(5))],
                         ids=["4b-g64", "4b-g128", "4b-channel", "3b-g32", "8b-tensor", "4b-g5"])
def test_nb04_budget_choice_agrees_with_the_rule(capsys, bits, granularity):
    nb04.check_budget_choice(bits, granularity)
    said = _says(capsys)
    W = sample_tensor("minilm_weight")
    try:
        n = roundtrip(W, bits, False, granularity)[1]
    except ValueError:
        assert said.startswith("Not yet")
        return
    ok = n["effective_bits"] <= nb04.BUDGET_BITS and n["sqnr_db"] >= nb04.TARGET_SQNR_DB
    assert said.startswith("Correct") == ok


def test_nb04_budget_choice_has_an_answer(capsys):
    """At least one configuration meets the exercise's target: the exercise is solvable."""
    W = sample_tensor("minilm_weight")
    good = [g for g in (32, 64, 128) if (n := roundtrip(W, 4, False, PerGroup(g))[1])["effective_bits"] <= 4.5
            and n["sqnr_db"] >= 20.0]
    assert good
    nb04.check_budget_choice(None, None)
    assert _says(capsys).startswith("Not answered")
    nb04.check_budget_choice(True, PerGroup(64))
    assert "bits must be an int" in _says(capsys)
