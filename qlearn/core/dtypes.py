"""Floating-point formats: range, precision, bit layout, and what a model costs in each.

A float with e exponent bits and m mantissa bits stores
    value = (-1)^sign * 2^(exponent - bias) * (1 + mantissa / 2^m)     (normal numbers)
so e decides the range (largest and smallest normal) and m the precision (machine epsilon = 2^-m).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["CASTABLE", "FLOAT_DTYPES", "BitLayout", "FloatInfo", "bit_layout", "cast_model", "float_info",
           "model_memory_bytes"]

# name -> (dtype, exponent bits, mantissa bits); the fp8 formats are the ones torch has.
_LAYOUTS = {
    "float32": (torch.float32, 8, 23),
    "float16": (torch.float16, 5, 10),
    "bfloat16": (torch.bfloat16, 8, 7),
    "float8_e4m3fn": (torch.float8_e4m3fn, 4, 3),
    "float8_e5m2": (torch.float8_e5m2, 5, 2),
}
FLOAT_DTYPES = {name: layout[0] for name, layout in _LAYOUTS.items()}
CASTABLE = (torch.float32, torch.float16, torch.bfloat16)
_UINT = {4: torch.int32, 2: torch.int16, 1: torch.uint8}


@dataclass(frozen=True)
class FloatInfo:
    """The numbers that describe one float format."""

    name: str
    bits: int
    exponent_bits: int
    mantissa_bits: int
    max: float
    smallest_normal: float
    eps: float
    bytes: int


@dataclass(frozen=True)
class BitLayout:
    """One value as a format stores it: sign, exponent and mantissa bits, and the value stored."""

    dtype: str
    sign: str
    exponent: str
    mantissa: str
    stored: float

    @property
    def bits(self) -> str:
        return self.sign + self.exponent + self.mantissa


def _name(dtype) -> str:
    for name, (d, _, _) in _LAYOUTS.items():
        if dtype == d or dtype == name:
            return name
    raise ValueError(f"unsupported float dtype {dtype!r}; choose one of {', '.join(_LAYOUTS)}")


def float_info(dtype) -> FloatInfo:
    """Range, precision and size of a float dtype (a torch.dtype or its name, e.g. 'bfloat16')."""
    name = _name(dtype)
    d, e, m = _LAYOUTS[name]
    fi = torch.finfo(d)
    return FloatInfo(name, fi.bits, e, m, float(fi.max), float(fi.smallest_normal), float(fi.eps), d.itemsize)


def bit_layout(value: float, dtype) -> BitLayout:
    """The sign / exponent / mantissa bits of `value` as torch casts it to `dtype`.

    Out of range, float16, bfloat16 and float8_e5m2 overflow to inf; torch saturates float8_e4m3fn
    (which has no inf) at +-448.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a Python int or float, got {type(value).__name__}")
    info = float_info(dtype)
    d = FLOAT_DTYPES[info.name]
    stored = torch.tensor([float(value)], dtype=torch.float32).to(d)
    raw = int(stored.view(_UINT[info.bytes]).item()) & ((1 << info.bits) - 1)
    text = format(raw, f"0{info.bits}b")
    e = info.exponent_bits
    return BitLayout(info.name, text[0], text[1:1 + e], text[1 + e:], float(stored.float().item()))


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def model_memory_bytes(model: nn.Module, dtype=None) -> int:
    """Bytes of all parameters and buffers; with `dtype`, as if every float tensor were cast to it."""
    _check_model(model)
    size = None if dtype is None else float_info(dtype).bytes
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        per = size if (size is not None and t.is_floating_point()) else t.element_size()
        total += t.numel() * per
    return total


def cast_model(model: nn.Module, dtype) -> nn.Module:
    """Cast every floating-point parameter and buffer of `model` in place (`model.to(dtype)`) and return it.

    Only float32, float16 and bfloat16 are allowed: most layers cannot compute in fp8.
    """
    _check_model(model)
    if isinstance(dtype, str):
        dtype = FLOAT_DTYPES.get(dtype, dtype)
    if dtype not in CASTABLE:
        raise ValueError(f"a model can be cast to float32, float16 or bfloat16, got {dtype!r}")
    return model.to(dtype)
