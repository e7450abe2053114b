"""qlearn against torchao and optimum-quanto on the same tensors: exact where the conventions agree,
and differences of exactly the expected size where they do not. These are oracle tests: they fail
if qlearn (or a library upgrade) changes a convention."""

import pytest

from qlearn import PerChannel, PerGroup, PerTensor, PerToken, choose_qparams, qrange
from qlearn.data.tensors import sample_tensor
from qlearn.teaching.compare import compare_with_quanto, compare_with_torchao, comparison_table, torchao_granularity

GRANS = [PerTensor(), PerChannel(0), PerChannel(1), PerGroup(32), PerGroup(128), PerToken()]
GRAN_IDS = ["tensor", "channel0", "channel1", "group32", "group128", "token"]


@pytest.fixture(scope="module")
def W():
    return sample_tensor("minilm_weight")


@pytest.fixture(scope="module")
def X():
    return sample_tensor("outliers", (64, 256), seed=1)


@pytest.mark.parametrize("bits", [2, 4, 8], ids=lambda b: f"{b}bit")
@pytest.mark.parametrize("granularity", GRANS, ids=GRAN_IDS)
def test_torchao_asymmetric_is_reproduced_exactly(W, X, bits, granularity):
    for x in (W, X):
        c = compare_with_torchao(x, bits, symmetric=False, granularity=granularity)
        assert c.exact, c
        assert c.mse_qlearn == c.mse_library


@pytest.mark.parametrize("bits", [2, 4, 8], ids=lambda b: f"{b}bit")
@pytest.mark.parametrize("granularity", GRANS, ids=GRAN_IDS)
def test_torchao_symmetric_is_the_full_range(W, bits, granularity):
    """qlearn restricted=False: same scales; codes differ only at the rounding tie at -max|x| (one per block at
    most)."""
    c = compare_with_torchao(W, bits, symmetric=True, granularity=granularity, restricted=False)
    assert c.scale_max_rel_diff == 0.0 and c.zero_point_equal
    n_blocks = choose_qparams(W, bits, True, granularity).scale.numel()
    assert c.max_code_diff <= 1 and c.code_mismatch * W.numel() <= n_blocks
    assert c.mse_library == pytest.approx(c.mse_qlearn, rel=1e-4)


@pytest.mark.parametrize("bits", [2, 4, 8], ids=lambda b: f"{b}bit")
def test_torchao_symmetric_differs_from_restricted_by_the_range_ratio(W, bits):
    """Default qlearn (restricted) has scale max|x|/qmax, torchao max|x|/(qmax + 1/2): relative gap 1/(2 qmax + 1)."""
    qmin, qmax = qrange(bits)
    c = compare_with_torchao(W, bits, symmetric=True, granularity=PerChannel(0))
    assert c.scale_max_rel_diff == pytest.approx(0.5 / (qmax + 0.5), rel=1e-4)
    assert c.code_mismatch > 0
    if bits <= 4:  # the full range has one more level: a smaller step and a lower MSE when levels are few
        assert c.mse_library < c.mse_qlearn


def test_quanto_qint8_is_symmetric_restricted_per_channel_exactly(W):
    c = compare_with_quanto(W, "qint8")
    assert c.exact, c


def test_quanto_qint4_with_integer_zero_point_is_asymmetric_per_group_exactly(W):
    c = compare_with_quanto(W, "qint4", group_size=128, zeropoint=True)
    assert c.exact, c


def test_quanto_qint4_default_float_shift_differs_by_at_most_one_code(W):
    """quanto's default shift is -min (a float), so its grid is offset from qlearn's integer zero point."""
    c = compare_with_quanto(W, "qint4", group_size=128)
    assert c.scale_max_rel_diff == 0.0 and c.zero_point_equal is None
    assert c.max_code_diff == 1 and 0.05 < c.code_mismatch < 0.5
    assert c.mse_library == pytest.approx(c.mse_qlearn, rel=0.1)


def test_torchao_granularity_mapping():
    from torchao.quantization import granularity as tg

    assert torchao_granularity(PerChannel(-1), 2) == tg.PerAxis(1)
    assert torchao_granularity(PerGroup(64), 2) == tg.PerGroup(64)
    with pytest.raises(TypeError, match="granularity"):
        torchao_granularity("tensor", 2)


@pytest.mark.parametrize("call, err, match", [
    (lambda W: compare_with_quanto(W[0], "qint8"), ValueError, "2-D"),
    (lambda W: compare_with_quanto(W, "qint3"), ValueError, "qint8' or 'qint4"),
    (lambda W: compare_with_quanto(W, "qint4", zeropoint=1), TypeError, "zeropoint"),
    (lambda W: compare_with_torchao(W, 9), ValueError, "bits"),
    (lambda W: compare_with_torchao(W, 8, granularity=PerGroup(5)), ValueError, "divide"),
    (lambda W: compare_with_torchao(W.int(), 8), TypeError, "floating-point"),
], ids=["1d-weight", "unknown-qtype", "int-zeropoint", "bits-9", "group-5", "int-tensor"])
def test_bad_inputs(W, call, err, match):
    with pytest.raises(err, match=match):
        call(W)


def test_comparison_table_fits_a_notebook_column(W):
    """03 §6 and 04 §6: the table must not wrap at a normal width (80 characters), and carry every row's numbers."""
    rows = [compare_with_torchao(W, 4, True, PerGroup(32), restricted=False), compare_with_torchao(W, 8, True),
            compare_with_quanto(W, "qint4", group_size=128, zeropoint=True), compare_with_quanto(W, "qint4")]
    text = repr(comparison_table(rows))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.count("torchao") == 1 and text.count("optimum-quanto") == 1  # one header per library
    for c in rows:
        line = next(line for line in text.splitlines() if line.strip().startswith(c.config))
        assert f"{c.code_mismatch:.2%}" in line and f"{c.mse_library / c.mse_qlearn:.4f}" in line
    html = comparison_table(rows)._repr_html_()
    assert html.count("<tr>") == len(rows) + 1
    with pytest.raises(TypeError, match="Comparison"):
        comparison_table([])
    with pytest.raises(TypeError, match="Comparison"):
        comparison_table(["torchao"])
