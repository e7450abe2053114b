"""HQQ against the real hqq package (same solver settings, CPU), and against RTN on heavy-tailed weights."""

import pytest
import torch

from qlearn.methods import hqq, rtn

hqq_optimize = pytest.importorskip("hqq.core.optimize")
hqq_quantize = pytest.importorskip("hqq.core.quantize")


def student_t_weight(out=64, inp=256, seed=0):
    torch.manual_seed(seed)
    return torch.distributions.StudentT(3.0).sample((out, inp)) * 0.02


@pytest.mark.parametrize("bits", [4, 3, 2], ids=lambda b: f"{b}bit")
@pytest.mark.parametrize("early_stop", [False, True], ids=["all-iters", "early-stop"])
def test_matches_hqq_package(bits, early_stop):
    W, g = student_t_weight(), 64
    qw = hqq.quantize_weight(W, bits=bits, group_size=g, early_stop=early_stop)
    # the package's own min-max init (axis=1: groups of g consecutive inputs), then its v2 solver
    _, meta = hqq_quantize.Quantizer.quantize(W, nbits=bits, group_size=g, axis=1, optimize=False, bitpack=False,
                                              device="cpu")
    params = dict(lp_norm=0.7, beta=10.0, kappa=1.01, iters=20, tol=0.0, early_stop=early_stop,
                  scale_gridsearch=False)
    W_q, s, z = hqq_optimize.optimize_weights_proximal_v2(W.reshape(-1, g), 1.0 / meta["scale"], meta["zero"],
                                                          [0, 2 ** bits - 1], axis=1, device="cpu",
                                                          dtype=torch.float32, opt_params=params)
    qmin = -(2 ** (bits - 1))
    assert torch.allclose(qw.scale.reshape(-1, 1), 1.0 / s, rtol=1e-5)
    assert torch.allclose(qw.zero_point.reshape(-1, 1) - qmin, z, atol=1e-4)
    same = (qw.codes().reshape(-1, g).float() - qmin) == W_q
    assert float(same.float().mean()) > 0.999
    ref = ((W_q - z) / s).reshape(W.shape)
    assert float((qw.dequantize() - ref).abs().max()) < 1e-5 + float(~same.all()) * float(qw.scale.max())


@pytest.mark.parametrize("bits,group_size", [(4, 64), (3, 64), (2, 32), (4, None)],
                         ids=["4bit", "3bit", "2bit", "4bit-row"])
@pytest.mark.parametrize("seed", [0, 1], ids=lambda s: f"seed{s}")
def test_beats_rtn_on_student_t_weights(bits, group_size, seed):
    W = student_t_weight(seed=seed)
    W_hat = hqq.quantize_weight(W, bits=bits, group_size=group_size).dequantize()
    R_hat = rtn.quantize_weight(W, bits=bits, group_size=group_size).dequantize()
    assert float((W_hat - W).abs().mean()) <= float((R_hat - W).abs().mean())
    assert float((W_hat - W).square().mean()) < float((R_hat - W).square().mean())


def test_history_falls_and_stops_early():
    W = student_t_weight()
    qw = hqq.quantize_weight(W, bits=3, iters=200)
    h = qw.history
    assert 2 <= len(h) < 200  # early stop
    assert all(b < a for a, b in zip(h[:-2], h[1:-1]))  # strictly falling until the stop
    assert float((qw.dequantize() - W).abs().mean()) <= h[0]
    assert len(hqq.quantize_weight(W, iters=7, early_stop=False).history) == 7


def test_shrink_is_soft_threshold_at_p1_and_never_nan():
    x = torch.tensor([-2.0, -0.05, 0.0, 0.05, 2.0])
    assert torch.allclose(hqq.shrink_lp(x, beta=10.0, lp_norm=1.0), torch.tensor([-1.9, 0.0, 0.0, 0.0, 1.9]))
    assert bool(hqq.shrink_lp(x, beta=10.0, lp_norm=0.7).isfinite().all())
