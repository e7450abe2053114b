"""effective_bits / metadata_bits / storage_bytes: codes plus scales and zero points, per weight."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qlearn import PerChannel, PerGroup, PerTensor, QuantLinear, choose_qparams, model_size_bytes
from qlearn.core.bits import PAPERS_FP16, effective_bits, metadata_bits, storage_bytes


def test_default_counts_a_float32_scale_and_an_int8_zero_point():
    assert effective_bits((384, 384), 4, PerGroup(128)) == 4 + (32 + 8) / 128
    assert effective_bits((4096, 4096), 4, PerGroup(128)) == 4.3125


def test_the_papers_fp16_convention_is_a_labelled_option():
    assert effective_bits((384, 384), 4, PerGroup(128), **PAPERS_FP16) == 4.25
    assert effective_bits((4096, 4096), 3, PerGroup(64), **PAPERS_FP16) == 3.5


@pytest.mark.parametrize("bits, container, granularity", [
    (4, 4, PerGroup(128)), (2, 2, PerGroup(32)), (8, 8, PerChannel(0)), (3, 4, PerGroup(64)), (6, 8, PerTensor())],
    ids=["int4-g128", "int2-g32", "int8-channel", "int3-in-4-bit-slots-g64", "int6-in-bytes-tensor"])
def test_storage_bytes_are_what_quantlinear_really_stores(bits, container, granularity):
    """Oracle: the default convention is QuantLinear's buffers (packed codes, float32 scale, int8 zero point).
    QuantLinear keeps 3-bit codes in 4-bit slots and 5..7-bit codes in bytes (packing.py): count the slot width."""
    layer = QuantLinear(512, 256, bits=bits, granularity=granularity, symmetric=False, bias=False, device="meta")
    assert storage_bytes((256, 512), container, granularity) == model_size_bytes(layer)  # W (out, in) = (256, 512)


def test_a_symmetric_quantlinear_keeps_one_zero_byte_per_block_that_the_count_leaves_out():
    layer = QuantLinear(512, 256, bits=4, granularity=PerGroup(128), symmetric=True, bias=False, device="meta")
    blocks = 256 * 512 // 128
    assert model_size_bytes(layer) - storage_bytes((256, 512), 4, PerGroup(128), symmetric=True) == blocks


@settings(max_examples=40, deadline=None)
@given(out=st.integers(1, 64), groups=st.integers(1, 8), g=st.sampled_from([8, 16, 32, 128]),
       bits=st.integers(2, 8), symmetric=st.booleans(), scale_bits=st.sampled_from([16, 32]))
def test_metadata_counts_one_scale_and_zero_per_block_that_choose_qparams_makes(out, groups, g, bits, symmetric,
                                                                                scale_bits):
    shape = (out, groups * g)
    for gran in (PerTensor(), PerChannel(0), PerGroup(g)):
        qp = choose_qparams(torch.ones(shape), bits, symmetric, gran)
        per_block = scale_bits + (0 if symmetric else 8)
        assert metadata_bits(shape, gran, symmetric, scale_bits, 8) == qp.scale.numel() * per_block
        expected = bits + qp.scale.numel() * per_block / math.prod(shape)
        assert effective_bits(shape, bits, gran, symmetric, scale_bits) == pytest.approx(expected, rel=1e-12)
        assert storage_bytes(shape, bits, gran, symmetric, scale_bits) == pytest.approx(expected * math.prod(shape) / 8)


def test_finer_granularity_costs_more_bits():
    shape = (384, 384)
    costs = [effective_bits(shape, 4, g) for g in (PerTensor(), PerChannel(0), PerGroup(128), PerGroup(32))]
    assert costs == sorted(costs) and len(set(costs)) == 4


def test_symmetric_stores_no_zero_point():
    assert metadata_bits((8, 64), PerGroup(32), symmetric=True) == 16 * 32
    assert metadata_bits((8, 64), PerGroup(32), symmetric=False) == 16 * (32 + 8)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(shape=torch.zeros(3, 4)), TypeError, "shape"),
    (dict(shape="abc"), TypeError, "shape"),
    (dict(shape=(0, 4)), ValueError, "positive"),
    (dict(shape=()), ValueError, "at least one dim"),
    (dict(bits=9), ValueError, "bits"),
    (dict(bits=4.0), TypeError, "bits"),
    (dict(granularity=PerGroup(5)), ValueError, "divide"),
    (dict(granularity="group"), TypeError, "granularity"),
    (dict(scale_bits=-1), ValueError, "scale_bits"),
    (dict(zero_point_bits=1.5), ValueError, "zero_point_bits"),
    (dict(symmetric=1), TypeError, "symmetric"),
], ids=["tensor-not-shape", "string-shape", "zero-size", "0-d", "bits-9", "float-bits", "group-5", "string-granularity",
        "negative-scale-bits", "float-zero-bits", "int-symmetric"])
def test_bad_inputs(kwargs, err, match):
    args = dict(shape=(8, 64), bits=4, granularity=PerGroup(32))
    args.update(kwargs)
    with pytest.raises(err, match=match):
        effective_bits(**args)
