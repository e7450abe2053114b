"""Storing a pruned weight sparsely: the bytes its zeros save, in two formats, as the course counts them.

A pruned nn.Linear still holds a dense tensor: its zeros cost as much as any weight until the format drops them.

    bitmask   the kept values, in row-major order, + one bit per weight (1 = kept), packed 8 to a byte
              bytes = kept * b / 8 + ceil(out * in / 8)                     (b: bits per stored value)
    2:4       NVIDIA's compressed format for sparse tensor cores (cuSPARSELt, torch's to_sparse_semi_structured):
              every group of 4 consecutive inputs of a row keeps exactly 2 values, stored densely (out, in / 2),
              + a 2-bit index per kept value (its position 0..3 in the group), packed 4 to a byte
              bytes = kept * b / 8 + kept * 2 / 8,    kept = out * in / 2

    layout of one row of 8 inputs, 2:4:   w = [0, a, 0, b | c, 0, 0, d]
        values  [a, b, c, d]              (in / 2 values)
        indices [1, 3, 0, 3]              2 bits each: byte = 1 | 3 << 2 | 0 << 4 | 3 << 6 = 0b11_00_11_01

With b = 16 (float16) both cost 1.125 bytes a weight at 50 %: a 2-bit index per kept value is one bit per weight,
the same metadata as the bitmask. What 2:4 buys is not bytes but speed on the GPUs that have sparse tensor cores:
the hardware skips the zeros by the index, about 2x on the matrix multiplies. On a CPU a dense matmul pays for
every zero; the formats here only count and pack, they do not compute.
With value_bits (a quantized sparse layer, SparseGPT's joint mode), each group of `group_size` inputs of a row
(None: the whole row) adds a float16 scale and a float16 zero point, 4 bytes.
Simplified: NVIDIA's real metadata interleaves the indices in a hardware tile order; the count is the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.validation import (
    check_bits,
    check_choice,
    check_float_tensor,
    check_group_size,
    check_module,
    check_names,
    check_weight,
)

__all__ = ["FORMATS", "compress_2to4", "compress_bitmask", "decompress_2to4", "decompress_bitmask",
           "sparse_model_bytes", "sparse_weight_bytes"]

FORMATS = ("bitmask", "2:4")


def _pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes of `bits` bits (1 or 2), packed little-end first into uint8. Shapes: (n,) -> (ceil(n * bits / 8),)."""
    per = 8 // bits
    codes = torch.nn.functional.pad(codes.to(torch.uint8), (0, -codes.numel() % per))  # (n padded,)
    shifts = torch.arange(per, dtype=torch.uint8, device=codes.device) * bits  # (per,)
    return (codes.reshape(-1, per) << shifts).sum(1, dtype=torch.uint8)  # (n padded / per,)


def _unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """The inverse of _pack_bits. Shapes: (bytes,) uint8 -> (n,) uint8."""
    per = 8 // bits
    shifts = torch.arange(per, dtype=torch.uint8, device=packed.device) * bits  # (per,)
    return ((packed[:, None] >> shifts) & (2 ** bits - 1)).reshape(-1)[:n]  # (n,)


def compress_bitmask(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, packed mask): the nonzero weights in row-major order and one bit per weight, 8 to a byte.

    Shapes: W (out, in) -> values (kept,) in W's dtype, mask (ceil(out * in / 8),) uint8.
    """
    check_weight(W)
    keep = (W != 0).reshape(-1)  # (out * in,)
    return W.reshape(-1)[keep], _pack_bits(keep, 1)


def decompress_bitmask(values: torch.Tensor, mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The dense weight back from compress_bitmask's output. Shapes: (kept,), (bytes,) -> W (out, in)."""
    if not (isinstance(shape, (tuple, list)) and len(shape) == 2 and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise TypeError(f"shape must be (out, in), two positive ints, got {shape!r:.80}")
    _check_packed(values, mask, 1, 1)
    n = math.prod(shape)
    if mask.numel() != math.ceil(n / 8):
        raise ValueError(f"a mask of shape {tuple(shape)} takes {math.ceil(n / 8)} bytes, got {mask.numel()}")
    keep = _unpack_bits(mask, 1, n).bool()  # (out * in,)
    if int(keep.sum()) != values.numel():
        raise ValueError(f"the mask keeps {int(keep.sum())} weights but {values.numel()} values were given")
    W = torch.zeros(n, dtype=values.dtype, device=values.device)
    W[keep] = values
    return W.reshape(shape)  # (out, in)


def _check_packed(values, packed, ndim: int, bits: int) -> None:
    """Raise unless values is a finite float tensor of `ndim` dims and packed a 1-D uint8 tensor."""
    check_float_tensor(values, "values")
    if values.ndim != ndim:
        raise ValueError(f"values must have {ndim} dims, got shape {tuple(values.shape)}")
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.ndim != 1:
        raise TypeError(f"the packed {'mask' if bits == 1 else 'indices'} must be a 1-D uint8 tensor")


def _check_2to4(W: torch.Tensor) -> torch.Tensor:
    """Nonzero-mask of a weight with at most 2 nonzeros in every 4, else raise. (out, in) -> (out, in / 4, 4)."""
    if W.shape[1] % 4:
        raise ValueError(f"2:4 needs in_features to be a multiple of 4, got {W.shape[1]}")
    nonzero = (W != 0).reshape(W.shape[0], -1, 4)  # (out, in / 4, 4)
    if bool((nonzero.sum(2) > 2).any()):
        raise ValueError("W does not follow the 2:4 pattern: some group of 4 inputs has more than 2 nonzero weights "
                         "(prune it with pattern='2:4' first)")
    return nonzero


def compress_2to4(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, packed indices): NVIDIA's 2:4 layout, 2 values per group of 4 and a 2-bit position for each.

    A group with fewer than 2 nonzeros stores a kept 0 at its first free positions (the format always keeps two).
    Shapes: W (out, in), in % 4 == 0 -> values (out, in / 2) in W's dtype, indices (ceil(out * in / 2 / 4),) uint8.
    """
    check_weight(W)
    nonzero = _check_2to4(W)  # (out, in / 4, 4)
    # the 2 kept positions of each group: nonzeros first, then the earliest zeros; in increasing order
    order = torch.sort((~nonzero).to(torch.uint8), dim=2, stable=True).indices[..., :2]  # (out, in / 4, 2)
    index = order.sort(dim=2).values  # (out, in / 4, 2)
    values = W.reshape(W.shape[0], -1, 4).gather(2, index).reshape(W.shape[0], -1)  # (out, in / 2)
    return values, _pack_bits(index.reshape(-1), 2)


def decompress_2to4(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The dense weight back from compress_2to4's output. Shapes: (out, in / 2), (bytes,) -> W (out, in)."""
    _check_packed(values, indices, 2, 2)
    out, half = values.shape
    if half % 2 or indices.numel() != math.ceil(out * half * 2 / 8):
        raise ValueError(f"values (out, in / 2) = {tuple(values.shape)} need an even in / 2 and "
                         f"{math.ceil(out * half * 2 / 8)} index bytes, got {indices.numel()}")
    index = _unpack_bits(indices, 2, out * half).long().reshape(out, half // 2, 2)  # (out, in / 4, 2)
    W = torch.zeros(out, half // 2, 4, dtype=values.dtype, device=values.device)  # (out, in / 4, 4)
    W.scatter_(2, index, values.reshape(out, half // 2, 2))
    return W.reshape(out, 2 * half)  # (out, in)


def _weight_bytes(W: torch.Tensor, format: str, value_bits: int | None, group_size: int | None) -> int:
    """sparse_weight_bytes without the argument checks."""
    out, columns = W.shape
    b = W.element_size() * 8 if value_bits is None else value_bits
    if format == "2:4":
        _check_2to4(W)
        kept = out * columns // 2
        stored = math.ceil(kept * b / 8) + math.ceil(kept * 2 / 8)
    else:
        kept = int((W != 0).sum())
        stored = math.ceil(kept * b / 8) + math.ceil(out * columns / 8)
    if value_bits is not None:
        stored += out * (columns // (group_size or columns)) * 4  # a float16 scale and zero point per group
    return stored


def sparse_weight_bytes(W: torch.Tensor, format: str = "bitmask", value_bits: int | None = None,
                        group_size: int | None = None) -> int:
    """Bytes a pruned weight takes in a sparse format (see the module docstring for the formulas).

    value_bits=None: the values at W's own element size; 2..8: quantized values plus 4 bytes per group of
    `group_size` inputs of a row (None: one group per row).
    Shapes: W (out, in) -> int.
    """
    check_weight(W)
    check_choice(format, "format", FORMATS)
    if value_bits is not None:
        check_bits(value_bits)
    group_size = check_group_size(group_size, W.shape[1])
    if value_bits is None and group_size is not None:
        raise ValueError("group_size sets the scales of quantized values: pass value_bits= too, or group_size=None")
    return _weight_bytes(W.detach(), format, value_bits, group_size)


def sparse_model_bytes(model: nn.Module, layers, format: str = "bitmask", value_bits: int | None = None,
                       group_size: int | None = None) -> int:
    """Bytes of the model with the weights of `layers` stored sparsely: model_size_bytes with those swapped.

        bytes = sum over every parameter and buffer, once, of numel * element size
                - sum over `layers` of their weight's dense bytes + their sparse_weight_bytes

    layers: the names of the pruned nn.Linear layers (a PruneReport's `sparsity` keys, say).
    Shapes: each named weight (out, in) -> one int for the model.
    """
    check_module(model)
    names = check_names(layers, model)
    check_choice(format, "format", FORMATS)
    if value_bits is not None:
        check_bits(value_bits)
    modules = dict(model.named_modules())
    weights = {}
    for name in names:
        W = getattr(modules[name], "weight", None)
        if not isinstance(modules[name], nn.Linear) or not isinstance(W, torch.Tensor):
            raise ValueError(f"layer {name!r} is not an nn.Linear with a weight: {type(modules[name]).__name__}")
        check_group_size(group_size, W.shape[1])
        weights[id(W)] = W.detach()
    if value_bits is None and group_size is not None:
        raise ValueError("group_size sets the scales of quantized values: pass value_bits= too, or group_size=None")
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return sum(_weight_bytes(t, format, value_bits, group_size) if i in weights else t.numel() * t.element_size()
               for i, t in tensors.items())
