"""Sub-byte packing: exact round trips, the documented bit layout, and bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qlearn.core.primitives import qrange
from qlearn.inference import packing


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 8), rows=st.integers(1, 4), n=st.integers(1, 37), seed=st.integers(0, 2**16))
def test_unpack_inverts_pack(bits, rows, n, seed):
    qmin, qmax = qrange(bits)
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(qmin, qmax + 1, (rows, n), generator=g).to(torch.int8)
    packed = packing.pack(q, bits)
    assert packed.dtype == torch.uint8
    assert packed.shape == (rows, packing.packed_length(n, bits))
    assert torch.equal(packing.unpack(packed, bits, n), q)


@pytest.mark.parametrize("bits,per_byte", [(2, 4), (3, 2), (4, 2), (5, 1), (8, 1)], ids=lambda v: str(v))
def test_packed_size_is_bits_per_container(bits, per_byte):
    q = torch.zeros(3, 16, dtype=torch.int8)
    assert packing.pack(q, bits).shape == (3, 16 // per_byte)


def test_docstring_bit_diagrams():
    # 4-bit: codes [-3, 5] -> u = [5, 13] -> byte 1101 0101
    assert packing.pack(torch.tensor([[-3, 5]], dtype=torch.int8), 4).item() == 0b1101_0101
    # 2-bit: codes [-2, -1, 0, 1] -> u = [0, 1, 2, 3] -> byte 11 10 01 00
    assert packing.pack(torch.tensor([[-2, -1, 0, 1]], dtype=torch.int8), 2).item() == 0b11_10_01_00


def test_odd_length_pads_and_rows_stay_independent():
    q = torch.tensor([[-8, 7, 3], [1, -1, 0]], dtype=torch.int8)
    packed = packing.pack(q, 4)
    assert packed.shape == (2, 2)
    assert torch.equal(packing.pack(q[1:], 4), packed[1:])
    assert torch.equal(packing.unpack(packed, 4, 3), q)


@pytest.mark.parametrize("bad,err", [
    (torch.zeros(4, dtype=torch.int32), TypeError),
    ([1, 2], TypeError),
    (torch.tensor([8, 0], dtype=torch.int8), ValueError),
    (torch.zeros((), dtype=torch.int8), ValueError),
], ids=["int32", "list", "out-of-range", "0-d"])
def test_pack_rejects_bad_codes(bad, err):
    with pytest.raises(err):
        packing.pack(bad, 4)


def test_pack_rejects_bad_bits():
    with pytest.raises(ValueError, match="bits"):
        packing.pack(torch.zeros(4, dtype=torch.int8), 9)


def test_unpack_rejects_mismatch():
    packed = packing.pack(torch.zeros(2, 8, dtype=torch.int8), 4)
    with pytest.raises(ValueError, match="bytes per row"):
        packing.unpack(packed, 4, 9)
    with pytest.raises(TypeError, match="uint8"):
        packing.unpack(packed.to(torch.int8), 4, 8)
    with pytest.raises(ValueError, match="not packed"):
        packing.unpack(torch.full((1, 2), 0xFF, dtype=torch.uint8), 3, 4)
