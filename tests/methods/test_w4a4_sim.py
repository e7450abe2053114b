"""simulate_w8a8 at 4 bits and in MX formats: int4 per-token activations with int4 g32 weights (W4A4) and MXFP4
activations are the formulas they claim (by hand here, torchao's MXFP4 for the MX case), on a plain and a
rotated model, and the model is restored."""

import os

os.environ["TORCHAO_FORCE_SKIP_LOADING_SO_FILES"] = "1"  # torchao's CUDA extensions: not on this CPU machine

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import MXTensor  # noqa: E402

from qlearn.methods.w8a8_sim import simulate_w8a8  # noqa: E402


def toy():
    g = torch.Generator().manual_seed(5)
    X = torch.randn(3, 7, 64, generator=g)  # (batch, seq, in)
    X[..., 11] *= 40.0  # an outlier channel
    torch.manual_seed(5)
    return X, nn.Linear(64, 24)


def int_by_hand(t: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Symmetric, restricted range [-(2^(b-1) - 1), 2^(b-1) - 1], one scale amax / qmax per group of the last axis."""
    qmax = 2 ** (bits - 1) - 1
    blocks = t.reshape(*t.shape[:-1], -1, group)  # (..., n / group, group)
    scale = blocks.abs().amax(-1, keepdim=True) / qmax
    return (torch.round(blocks / scale).clamp(-qmax - 1, qmax) * scale).reshape(t.shape)


def mxfp4_oracle(t: torch.Tensor) -> torch.Tensor:
    flat = t.reshape(-1, t.shape[-1])  # (rows, in)
    return MXTensor.to_mx(flat, torch.float4_e2m1fn_x2, 32).dequantize(torch.float32).reshape(t.shape)


def test_w4a4_per_token_is_int4_per_token_times_int4_g32_weights():
    X, lin = toy()
    W = lin.weight.detach().clone()
    expected = F.linear(int_by_hand(X, 4, 64), int_by_hand(W, 4, 32), lin.bias)
    with simulate_w8a8(lin, "per_token", bits=4, weight_bits=4, weight_group_size=32) as sim:
        out = lin(X)
    assert torch.allclose(out, expected, atol=1e-5)
    assert (sim.weight_group_size, sim.bits) == (32, 4)
    assert torch.equal(lin.weight, W)


def test_mxfp4_weights_and_activations_equal_torchaos_mxfp4():
    X, lin = toy()
    expected = F.linear(mxfp4_oracle(X), mxfp4_oracle(lin.weight.detach()), lin.bias)
    with simulate_w8a8(lin, "mxfp4", weight_format="mxfp4"):
        out = lin(X)
    assert torch.allclose(out, expected, atol=1e-5)


def test_an_outlier_channel_costs_int4_per_token_more_than_mxfp4_blocks():
    X, lin = toy()
    with torch.no_grad():
        lin.weight[:, 11] = 0.0  # Y without the outlier channel: what the other channels lose is the error
    errors = {}
    with torch.no_grad():
        exact = lin(X)
        for activations in ("per_token", "mxfp4"):
            with simulate_w8a8(lin, activations, bits=4, weight_bits=8):
                errors[activations] = float((lin(X) - exact).norm() / exact.norm())
    assert errors["mxfp4"] < errors["per_token"] * 0.6  # blocks of 32 keep the outlier's big step in one block


@pytest.mark.parametrize("kwargs,err", [
    (dict(weight_group_size=48), ValueError),
    (dict(weight_format="int4"), ValueError),
    (dict(activations="mxfp5"), ValueError),
], ids=["group_not_dividing", "unknown_weight_format", "unknown_activation_format"])
def test_bad_settings_are_refused(kwargs, err):
    _, lin = toy()
    with pytest.raises(err):
        with simulate_w8a8(lin, **kwargs):
            pass


def test_a_layer_mx_cannot_split_is_refused_by_name():
    model = nn.Sequential(nn.Linear(64, 40), nn.Linear(40, 8))
    with pytest.raises(ValueError, match="'1' has 40"):
        with simulate_w8a8(model, "mxfp4"):
            pass
