"""Block floats of any element / block / scale: the MX and NVFP4 points equal mx's formats (themselves equal to
torchao) bit for bit, the bits per weight follow the bytes, and a finer scale never does worse on average."""

import pytest
import torch

from qlearn.core import metrics
from qlearn.data.models import minilm_weight
from qlearn.methods import block_float, mx


@pytest.mark.parametrize("point,format", [(("e2m1", 32, "e8m0"), "mxfp4"), (("e2m1", 16, "e4m3"), "nvfp4"),
                                          (("e4m3", 32, "e8m0"), "mxfp8_e4m3"), (("e3m2", 32, "e8m0"), "mxfp6_e3m2"),
                                          (("e2m3", 32, "e8m0"), "mxfp6_e2m3")], ids=lambda v: str(v))
def test_the_spec_points_equal_mx_bit_for_bit(point, format):
    W = minilm_weight("encoder.layer.2.intermediate.dense")  # (1536, 384) real float32 weights
    qw = mx.quantize_weight(W, format=format)
    assert torch.equal(block_float.quantize_dequantize(W, *point), qw.dequantize())
    assert block_float.bits_per_weight(*point, numel=W.numel()) == pytest.approx(qw.bits_per_weight, abs=1e-12)


def test_float32_scales_beat_power_of_two_scales_and_smaller_blocks_help():
    W = minilm_weight()
    err = {(b, s): metrics.mse(W, block_float.quantize_dequantize(W, "e2m1", b, s))
           for b in (16, 32, 64) for s in ("e8m0", "float32")}
    for b in (16, 32, 64):
        assert err[b, "float32"] < err[b, "e8m0"]
    assert err[16, "float32"] < err[32, "float32"] < err[64, "float32"]
    assert block_float.bits_per_weight("e2m1", 64, "float32") == 4.5


def test_refusals():
    with pytest.raises(ValueError, match="element"):
        block_float.quantize_dequantize(torch.randn(4, 32), element="e5m2")
    with pytest.raises(ValueError, match="divide"):
        block_float.quantize_dequantize(torch.randn(4, 48), block_size=32)
    with pytest.raises(ValueError, match="scale"):
        block_float.bits_per_weight("e2m1", 32, "bf16")
