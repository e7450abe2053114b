"""Sub-byte packing: store 2-, 3- and 4-bit integer codes two or four to a byte.

PyTorch has no int4 or int2 tensor that a matmul understands, so low-bit codes live in a
`uint8` buffer. Each signed code q in [qmin, qmax] is first shifted to an unsigned slot
value u = q - qmin (0 .. 2^bits - 1), then k = 8 // c slots of c bits are ORed into one byte,
element i of a row going to byte i // k at bit offset c * (i % k) (low bits first):

    4-bit container (bits 3 and 4), k = 2; codes q = [-3, 5], qmin = -8 -> u = [5, 13]
        u0 = 5  = 0101, u1 = 13 = 1101
        byte    = u1 << 4 | u0 = 1101 0101 = 0xD5
                  ^^^^ ^^^^
                  u1   u0

    2-bit container (bits 2), k = 4; codes q = [-2, -1, 0, 1], qmin = -2 -> u = [0, 1, 2, 3]
        byte    = u3 << 6 | u2 << 4 | u1 << 2 | u0 = 11 10 01 00 = 0xE4

    8-bit container (bits 5..8), k = 1: byte = u = q - qmin (no packing needed).

A row whose length n is not a multiple of k is padded with u = 0 at the end; `unpack`
takes the original n and drops the padding. Only whole bytes are ever read or written,
so the packed rows stay independent (row r of the packed tensor is row r of the codes).
"""

from __future__ import annotations

import torch

from ..core.primitives import CODE_DTYPE, qrange
from ..core.validation import check_bits

__all__ = ["container_bits", "pack", "packed_length", "unpack"]


def container_bits(bits: int) -> int:
    """Bits of the slot a `bits`-bit code is stored in: 2 for 2-bit, 4 for 3- and 4-bit, else 8."""
    check_bits(bits)
    return 2 if bits == 2 else 4 if bits <= 4 else 8


def packed_length(n: int, bits: int) -> int:
    """Bytes needed for a row of n codes: ceil(n / k) with k = 8 // container_bits(bits)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (codes per row), got {n!r}")
    k = 8 // container_bits(bits)
    return -(-n // k)


def _shifts(bits: int, device) -> torch.Tensor:
    c = container_bits(bits)
    return torch.arange(0, 8, c, device=device, dtype=torch.int32)  # (k,) bit offsets 0, c, 2c, ...


def pack(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack signed `bits`-bit codes along the last axis into bytes (layout in the module docstring).

    byte[j] = OR over s of (q[k*j + s] - qmin) << (c * s),   c = container_bits(bits), k = 8 // c

    Shapes: q (..., n) int8 codes in [qmin, qmax] -> (..., ceil(n / k)) uint8, on q's device.
    """
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor of integer codes, got {type(q).__name__}")
    if q.dtype != CODE_DTYPE:
        raise TypeError(f"q must hold int8 codes (from qlearn.quantize), got {q.dtype}")
    if q.ndim == 0 or q.shape[-1] == 0:
        raise ValueError(f"q needs at least one dim with at least one code, got shape {tuple(q.shape)}")
    qmin, qmax = qrange(bits)
    if q.numel() and (int(q.min()) < qmin or int(q.max()) > qmax):
        raise ValueError(f"{bits}-bit codes must lie in [{qmin}, {qmax}], got values from "
                         f"{int(q.min())} to {int(q.max())}")
    shifts = _shifts(bits, q.device)
    k = shifts.numel()
    u = q.to(torch.int32) - qmin  # (..., n) unsigned slot values
    pad = (-u.shape[-1]) % k
    if pad:
        u = torch.cat([u, u.new_zeros(*u.shape[:-1], pad)], dim=-1)  # (..., n + pad)
    u = u.reshape(*u.shape[:-1], -1, k)  # (..., n_bytes, k)
    return (u << shifts).sum(dim=-1).to(torch.uint8)  # (..., n_bytes); slots never overlap, so sum == OR


def unpack(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack`: the first n signed codes of each packed row.

    q[i] = ((byte[i // k] >> (c * (i % k))) & (2^c - 1)) + qmin

    Shapes: packed (..., ceil(n / k)) uint8 -> (..., n) int8, on packed's device.
    """
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor (from qlearn.inference.packing.pack), got {packed.dtype}")
    if packed.ndim == 0:
        raise ValueError("packed needs at least one dim, got a 0-d tensor")
    n_bytes = packed_length(n, bits)
    if packed.shape[-1] != n_bytes:
        raise ValueError(f"{n} codes of {bits} bits need {n_bytes} bytes per row, "
                         f"but the packed rows have {packed.shape[-1]}")
    qmin, _ = qrange(bits)
    shifts = _shifts(bits, packed.device)
    mask = (1 << container_bits(bits)) - 1
    u = (packed.to(torch.int32).unsqueeze(-1) >> shifts) & mask  # (..., n_bytes, k)
    u = u.reshape(*packed.shape[:-1], -1)[..., :n]  # (..., n): drop the padding
    q = u + qmin
    _, qmax = qrange(bits)
    if q.numel() and int(q.max()) > qmax:
        raise ValueError(f"packed bytes hold slot values above {qmax - qmin}: they were not packed "
                         f"with bits={bits}")
    return q.to(CODE_DTYPE)
