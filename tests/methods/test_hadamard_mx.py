"""The per-block Hadamard before MX / NVFP4 weights: its dequantized weight is torchao's MX of W H rotated back
(an oracle, bit for bit before the rotation back), the layer computes x W_hat^T, the signs are counted, and the
rotation lowers the error of blocks with a lone large weight (where one weight sets the E8M0 scale)."""

import os

os.environ["TORCHAO_FORCE_SKIP_LOADING_SO_FILES"] = "1"  # torchao's CUDA extensions: not on this CPU machine

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchao.prototype.mx_formats.mx_tensor import MXTensor  # noqa: E402

import qlearn  # noqa: E402
from qlearn.core import metrics  # noqa: E402
from qlearn.data.models import minilm_weight  # noqa: E402
from qlearn.methods import hadamard_mx, mx, rotation  # noqa: E402


def spiky(rows=64, cols=128, seed=0) -> torch.Tensor:
    """Gaussian weights with one large weight in about every second block of 32: the case rotation is for."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(rows, cols, generator=g) * 0.02
    hit = torch.rand(rows, cols // 32, generator=g) < 0.5  # (rows, blocks)
    where = torch.randint(0, 32, (rows, cols // 32), generator=g) + torch.arange(0, cols, 32)  # (rows, blocks)
    W[hit.nonzero()[:, 0], where[hit]] = 0.3
    return W


@pytest.mark.parametrize("random_signs", [False, True], ids=["plain", "random_signs"])
def test_dequantized_weight_is_torchaos_mxfp4_of_the_rotated_weight_rotated_back(random_signs):
    W = minilm_weight()  # (384, 384) real float32 weights
    H = rotation.hadamard(384, random_signs=random_signs, seed=4, block_size=32).float()  # (384, 384)
    qw = hadamard_mx.quantize_weight(W, block_size=32, random_signs=random_signs, seed=4)
    oracle = MXTensor.to_mx(W @ H, torch.float4_e2m1fn_x2, 32).dequantize(torch.float32)  # (384, 384)
    assert torch.equal(qw.rotated.dequantize(), oracle)  # the rotated weight, bit for bit
    assert torch.allclose(qw.dequantize(), (oracle.double() @ H.double().T).float(), atol=1e-6)


def test_layer_computes_x_times_w_hat_and_counts_the_signs():
    torch.manual_seed(0)
    linear = nn.Linear(128, 48)
    layer = hadamard_mx.HadamardMXLinear.from_linear(linear, "nvfp4", block_size=16, random_signs=True, seed=2)
    x = torch.randn(3, 5, 128)
    W_hat = layer.quantized_weight().dequantize()
    assert torch.allclose(layer(x), x @ W_hat.T + linear.bias.detach(), atol=1e-5)
    qw = hadamard_mx.quantize_weight(linear.weight, format="nvfp4", block_size=16, random_signs=True, seed=2)
    assert torch.equal(qw.dequantize(), W_hat)
    plain = mx.quantize_weight(linear.weight, format="nvfp4")
    assert qw.nbytes == plain.nbytes + 128  # one int8 sign per input column


def test_rotation_lowers_the_mxfp4_error_where_a_lone_weight_sets_the_scale():
    W = spiky()  # (NVFP4's finer E4M3 scale gains nothing here: measured, the rotation raises its error)
    plain = metrics.mse(W, mx.quantize_weight(W, format="mxfp4").dequantize())
    rotated = metrics.mse(W, hadamard_mx.quantize_weight(W, format="mxfp4", block_size=32).dequantize())
    assert rotated < 0.8 * plain


def test_quantize_model_method_and_refusals():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(4, 64)
    with torch.no_grad():
        expected = model(x)
    report = qlearn.quantize_model(model, method="hadamard_mx", format="mxfp4", random_signs=True)
    assert set(report.replaced) == {"0", "2"}
    assert isinstance(model[0], hadamard_mx.HadamardMXLinear)
    with torch.no_grad():
        assert float((model(x) - expected).norm() / expected.norm()) < 0.2
    with pytest.raises(ValueError, match="power of two"):
        hadamard_mx.quantize_weight(torch.randn(4, 96), block_size=48)
    with pytest.raises(ValueError, match="format"):
        hadamard_mx.quantize_weight(torch.randn(4, 64), format="int4")
    with pytest.raises(TypeError, match="seed"):
        hadamard_mx.quantize_weight(torch.randn(4, 64), random_signs=True, seed=1.5)


@pytest.mark.parametrize("n,block", [(576, 32), (576, 64), (96, 2), (64, 1)])
def test_hadamard_with_a_chosen_block_is_orthonormal_and_fast(n, block):
    H = rotation.hadamard(n, random_signs=True, seed=1, block_size=block)
    assert torch.allclose(H @ H.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert torch.equal(H.abs() > 0, torch.block_diag(*[torch.ones(block, block)] * (n // block)).bool())
    x = torch.randn(3, n, dtype=torch.float64)
    assert torch.allclose(rotation.hadamard_transform(x, block_size=block),
                          x @ rotation.hadamard(n, block_size=block), atol=1e-12)
    assert torch.equal(rotation.hadamard(n, block_size=n & -n), rotation.hadamard(n))  # the default block
    with pytest.raises(ValueError, match="power of two that divides"):
        rotation.hadamard(n, block_size=3 * block)
