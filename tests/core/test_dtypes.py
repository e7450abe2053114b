"""Float formats: ranges against torch.finfo, bit layouts against known encodings, model footprints."""

import struct

import pytest
import torch
from torch import nn

from qlearn.core import dtypes

NAMES = list(dtypes.FLOAT_DTYPES)


@pytest.mark.parametrize("name", NAMES)
def test_float_info_matches_finfo_and_layout(name):
    info = dtypes.float_info(name)
    fi = torch.finfo(dtypes.FLOAT_DTYPES[name])
    assert (info.max, info.smallest_normal, info.eps) == (fi.max, fi.smallest_normal, fi.eps)
    assert 1 + info.exponent_bits + info.mantissa_bits == info.bits == 8 * info.bytes
    assert info.eps == 2.0 ** -info.mantissa_bits


def test_float_info_accepts_dtype_and_rejects_others():
    assert dtypes.float_info(torch.bfloat16).name == "bfloat16"
    with pytest.raises(ValueError, match="unsupported float dtype"):
        dtypes.float_info(torch.int8)


@pytest.mark.parametrize("value", [1.0, -2.5, 0.1, 3.14159, 1e-3, 65504.0])
def test_float32_bits_match_struct(value):
    expected = format(struct.unpack(">I", struct.pack(">f", value))[0], "032b")
    assert dtypes.bit_layout(value, "float32").bits == expected


def test_bfloat16_is_top_half_of_float32_and_overflow():
    lay32, lay16 = dtypes.bit_layout(1.0, "float32"), dtypes.bit_layout(1.0, "bfloat16")
    assert lay16.bits == lay32.bits[:16]
    assert dtypes.bit_layout(70000.0, "float16").stored == float("inf")
    assert dtypes.bit_layout(70000.0, "bfloat16").stored == pytest.approx(70000.0, rel=0.01)
    assert dtypes.bit_layout(1000.0, "float8_e4m3fn").stored == 448.0


def test_bit_layout_known_half():
    lay = dtypes.bit_layout(-1.5, torch.float16)
    assert (lay.sign, lay.exponent, lay.mantissa) == ("1", "01111", "1000000000")
    with pytest.raises(TypeError):
        dtypes.bit_layout("1.5", "float16")


def test_model_memory_and_cast():
    model = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20))
    n_float = sum(p.numel() for p in model.parameters()) + 40  # running mean / var
    n_int = 1  # num_batches_tracked, int64
    assert dtypes.model_memory_bytes(model) == 4 * n_float + 8 * n_int
    assert dtypes.model_memory_bytes(model, torch.float16) == 2 * n_float + 8 * n_int
    dtypes.cast_model(model, "bfloat16")
    assert model[0].weight.dtype == torch.bfloat16
    assert dtypes.model_memory_bytes(model) == 2 * n_float + 8 * n_int
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        dtypes.cast_model(model, torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="nn.Module"):
        dtypes.model_memory_bytes("model")
