"""Sparse storage: bitmask and 2:4 round trips are exact, the byte counts are the formulas, the model count swaps
exactly the pruned weights' bytes."""

import math

import pytest
import torch
from torch import nn

from qlearn.compression.prune import nm_mask
from qlearn.compression.sparse import (
    compress_2to4,
    compress_bitmask,
    decompress_2to4,
    decompress_bitmask,
    sparse_model_bytes,
    sparse_weight_bytes,
)
from qlearn.inference.quantize_model import model_size_bytes


def two_four(out=8, columns=32, dtype=torch.float32, seed=0):
    W = torch.randn(out, columns, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return W * nm_mask(W.float().abs(), 2, 4)


def test_the_docstrings_layout_example():
    a, b, c, d = 1.0, 2.0, 3.0, 4.0
    values, indices = compress_2to4(torch.tensor([[0, a, 0, b, c, 0, 0, d]]))
    assert values.tolist() == [[a, b, c, d]]
    assert indices.tolist() == [0b11_00_11_01]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_2to4_round_trip_is_exact_and_takes_the_formulas_bytes(dtype):
    W = two_four(dtype=dtype)
    W[0, :4] = torch.tensor([0, 0, 0, 5.0], dtype=dtype)  # a group with one nonzero: a kept 0 fills it
    values, indices = compress_2to4(W)
    assert values.shape == (8, 16) and torch.equal(decompress_2to4(values, indices), W)
    kept = 8 * 32 // 2
    expected = kept * W.element_size() + kept * 2 // 8
    assert values.nbytes + indices.nbytes == expected == sparse_weight_bytes(W, "2:4")


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_bitmask_round_trip_is_exact_and_takes_the_formulas_bytes(sparsity):
    W = torch.randn(6, 20)
    W[torch.rand(6, 20) < sparsity] = 0
    values, mask = compress_bitmask(W)
    assert torch.equal(decompress_bitmask(values, mask, (6, 20)), W)
    expected = int((W != 0).sum()) * 4 + math.ceil(120 / 8)
    assert values.nbytes + mask.nbytes == expected == sparse_weight_bytes(W, "bitmask")


def test_quantized_values_count_their_bits_and_scales():
    W = two_four(16, 64)
    kept = 16 * 32
    assert sparse_weight_bytes(W, "2:4", value_bits=4, group_size=32) == kept // 2 + kept // 4 + 16 * 2 * 4
    assert sparse_weight_bytes(W, "bitmask", value_bits=4) == kept // 2 + 16 * 64 // 8 + 16 * 4


def test_a_dense_weight_cannot_be_stored_2to4():
    with pytest.raises(ValueError, match="does not follow the 2:4 pattern"):
        compress_2to4(torch.randn(4, 8))
    with pytest.raises(ValueError, match="does not follow"):
        sparse_weight_bytes(torch.randn(4, 8), "2:4")


def test_model_bytes_swap_exactly_the_named_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    with torch.no_grad():
        model[0].weight.copy_(two_four(16, 32))
    dense = model_size_bytes(model)
    assert sparse_model_bytes(model, []) == dense
    sparse = sparse_model_bytes(model, ["0"], format="2:4")
    assert sparse == dense - 16 * 32 * 4 + sparse_weight_bytes(model[0].weight, "2:4")
    assert sparse < dense
    with pytest.raises(ValueError, match="not an nn.Linear"):
        sparse_model_bytes(model, ["1"])


def test_tied_weights_count_once():
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 10, bias=False))
    model[1].weight = model[0].weight
    assert sparse_model_bytes(model, []) == 10 * 8 * 4 == model_size_bytes(model)
