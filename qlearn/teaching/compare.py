"""qlearn side by side with torchao and optimum-quanto on the same tensor: where they agree exactly, and by how
much they differ.

torchao:  choose_qparams_affine / quantize_affine / dequantize_affine with a block_size from
          torchao's own PerTensor / PerAxis / PerGroup (`get_block_size`). Asymmetric: the same formulas
          as qlearn. Symmetric: torchao divides max|x| by (qmax - qmin) / 2 (the full signed range),
          qlearn by qmax unless `restricted=False`.
quanto:   qint8 weights are symmetric per output channel with scale = max|x| / 127 (qlearn's restricted
          range). qint4 weights are affine per group with codes 0..15 and, by default, a FLOAT shift
          (-min of the group, so zero is not exactly representable); with `zeropoint=True` the shift is an
          integer zero point, codes are qlearn's codes + 8.

Both return a `Comparison`: scale / zero point / code / reconstruction differences and both MSEs.
"""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass

import torch

from ..core import metrics
from ..core.granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken, check_granularity
from ..core.primitives import choose_qparams, dequantize, qrange, quantize
from ..core.quiet import silence_torchao_import_noise
from ..core.validation import check_bits, check_bool, check_float_tensor

__all__ = ["Comparison", "ComparisonTable", "compare_with_quanto", "compare_with_torchao", "comparison_table",
           "torchao_granularity"]


@dataclass(frozen=True)
class Comparison:
    """How one library's quantization of a tensor differs from qlearn's.

    scale_max_rel_diff:  max |s_lib - s_qlearn| / s_qlearn over blocks
    zero_point_equal:    True / False, or None when the library stores a float shift instead
    code_mismatch:       fraction of elements whose integer codes differ (after mapping to qlearn's signed range)
    max_code_diff:       largest |code difference|
    max_abs_diff:        max |x_hat_lib - x_hat_qlearn|
    """

    library: str
    config: str
    scale_max_rel_diff: float
    zero_point_equal: bool | None
    code_mismatch: float
    max_code_diff: int
    max_abs_diff: float
    mse_qlearn: float
    mse_library: float

    @property
    def exact(self) -> bool:
        """True when scales, zero points, codes and reconstructions are all identical."""
        return (self.scale_max_rel_diff == 0.0 and self.zero_point_equal is True
                and self.max_code_diff == 0 and self.max_abs_diff == 0.0)


def _compare(library, config, x, qp, scale, zero_point, codes, x_hat) -> Comparison:
    q = quantize(x, qp)
    mine = dequantize(q, qp)
    s_ref = qp.scale.flatten()  # (n_blocks,)
    zp_equal = None if zero_point is None else bool(torch.equal(zero_point.flatten().int(), qp.zero_point.flatten()))
    diff = (codes.reshape(x.shape).int() - q.int()).abs()  # (...)
    return Comparison(library, config,
                      float(((scale.flatten().float() - s_ref).abs() / s_ref).max()), zp_equal,
                      float((diff != 0).float().mean()), int(diff.max()),
                      float((x_hat.reshape(x.shape).float() - mine.float()).abs().max()),
                      metrics.mse(x, mine), metrics.mse(x, x_hat.reshape(x.shape).to(x.dtype)))


def _short(granularity: Granularity) -> str:
    """A granularity in a few words, for a table column: 'per channel', 'groups of 128'."""
    if isinstance(granularity, PerGroup):
        return f"groups of {granularity.group_size}"
    if isinstance(granularity, PerChannel):
        return "per channel" if granularity.axis in (0, -2) else f"per channel (axis {granularity.axis})"
    return "per token" if isinstance(granularity, PerToken) else "per tensor"


def torchao_granularity(granularity: Granularity, ndim: int):
    """The torchao granularity object for a qlearn one (PerChannel(axis) -> PerAxis(axis))."""
    silence_torchao_import_noise()
    from torchao.quantization import granularity as tg

    check_granularity(granularity)
    if isinstance(granularity, PerTensor):
        return tg.PerTensor()
    if isinstance(granularity, PerChannel):
        return tg.PerAxis(granularity.axis % ndim)
    if isinstance(granularity, PerGroup):
        return tg.PerGroup(granularity.group_size)
    if isinstance(granularity, PerToken):
        return tg.PerToken()
    raise ValueError(f"no torchao equivalent for {granularity!r}")


def compare_with_torchao(x: torch.Tensor, bits: int = 8, symmetric: bool = False,
                         granularity: Granularity = PerTensor(), restricted: bool = True) -> Comparison:
    """Quantize x with torchao's affine primitives (int8 storage, quant_min/max = qlearn's range) and compare.

    torchao's MappingType.SYMMETRIC uses the full range; qlearn reproduces it with restricted=False.
    Shapes: x (...); scales are compared block by block in the same order.
    """
    silence_torchao_import_noise()
    from torchao.quantization.quant_primitives import (
        MappingType,
        choose_qparams_affine,
        dequantize_affine,
        quantize_affine,
    )
    from torchao.quantization.utils import get_block_size

    check_float_tensor(x)
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    check_granularity(granularity).check(x.shape)
    qp = choose_qparams(x, bits, symmetric, granularity, restricted=restricted)
    qmin, qmax = qrange(bits)
    block_size = get_block_size(tuple(x.shape), torchao_granularity(granularity, x.ndim))
    mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
    scale, zero_point = choose_qparams_affine(x, mapping, block_size, torch.int8, qmin, qmax)
    codes = quantize_affine(x, block_size, scale, zero_point, torch.int8, qmin, qmax)
    x_hat = dequantize_affine(codes, block_size, scale, zero_point, torch.int8, qmin, qmax, output_dtype=x.dtype)
    config = f"{bits}-bit {'symmetric' if symmetric else 'asymmetric'}, {_short(granularity)}" + (
        "" if restricted or not symmetric else ", full range")
    return _compare("torchao", config, x, qp, scale, zero_point, codes, x_hat)


def compare_with_quanto(W: torch.Tensor, weights: str = "qint8", group_size: int = 128,
                        zeropoint: bool = False) -> Comparison:
    """Quantize a weight W (out, in) the way optimum-quanto's QLinear does and compare with qlearn.

    qint8: AbsmaxOptimizer + quantize_weight(axis=0)   vs  choose_qparams(W, 8, True, PerChannel(0))
    qint4: MaxOptimizer(group_size, zeropoint) + quantize_weight(axis=0, group_size)
                                                        vs  choose_qparams(W, 4, False, PerGroup(group_size))
    Shapes: W (out, in); for qint4, group_size must divide in.
    """
    silence_torchao_import_noise()  # optimum-quanto imports torchao
    from optimum.quanto import AbsmaxOptimizer, MaxOptimizer, qint4, qint8, quantize_weight

    check_float_tensor(W, "W")
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D weight (out, in), got shape {tuple(W.shape)}")
    check_bool(zeropoint, "zeropoint")
    if weights == "qint8":
        qp = choose_qparams(W, 8, True, PerChannel(0))
        scale = AbsmaxOptimizer()(W, qtype=qint8, axis=0)  # (out, 1)
        qt = quantize_weight(W, qint8, axis=0, scale=scale, optimized=False)
        return _compare("optimum-quanto", "qint8 symmetric, per channel", W, qp, scale,
                        torch.zeros_like(scale, dtype=torch.int32), qt._data, qt.dequantize())
    if weights != "qint4":
        raise ValueError(f"weights must be 'qint8' or 'qint4', got {weights!r}")
    qp = choose_qparams(W, 4, False, PerGroup(group_size))
    scale, shift = MaxOptimizer()(W, qtype=qint4, axis=0, group_size=group_size, zeropoint=zeropoint)  # (out*in/g, 1)
    qt = quantize_weight(W, qint4, axis=0, scale=scale, shift=shift, group_size=group_size, optimized=False)
    data = qt._data.unpack() if hasattr(qt._data, "unpack") else qt._data  # (out*in/g, g) codes 0..15
    offset = 2 ** (qint4.bits - 1)  # quanto's unsigned codes = qlearn's signed codes + 8
    zero_point = shift.int() - offset if zeropoint else None
    config = f"qint4 affine, groups of {group_size}, " + ("int zero point" if zeropoint else "float shift")
    return _compare("optimum-quanto", config, W, qp, scale, zero_point, data.int() - offset, qt.dequantize())


_COLUMNS = (("scale", 8, "{:.1e}"), ("zp", 5, "{!s}"), ("codes", 7, "{:.2%}"), ("MSE", 6, "{:.4f}"))
_LEGEND = ("scale: max relative difference of the scales. zp: the zero points are equal (None: the library keeps "
           "a float shift instead). codes: share of integer codes that differ. MSE: library MSE / qlearn MSE.")


@dataclass(frozen=True)
class ComparisonTable:
    """Rows of `Comparison`s as one table grouped by library: under 80 characters wide as text, HTML in a notebook."""

    rows: tuple

    def _cells(self, c: Comparison) -> list[str]:
        values = (c.scale_max_rel_diff, c.zero_point_equal, c.code_mismatch, c.mse_library / c.mse_qlearn)
        return [fmt.format(v) for (_, _, fmt), v in zip(_COLUMNS, values)]

    def __repr__(self) -> str:
        width = max(len(c.config) for c in self.rows)
        head = " ".join(f"{name:>{w}}" for name, w, _ in _COLUMNS)
        lines, library = [], None
        for c in self.rows:
            if c.library != library:
                library = c.library
                lines.append(f"{library:{width + 2}} {head}")
            lines.append(f"  {c.config:{width}} "
                         + " ".join(f"{v:>{w}}" for (_, w, _), v in zip(_COLUMNS, self._cells(c))))
        return "\n".join(lines + textwrap.wrap(_LEGEND, 78))

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("library", "configuration", *(n for n, _, _ in _COLUMNS)))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>"
                                        for v in (c.library, c.config, *self._cells(c)))
                       + "</tr>" for c in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p><small>{_LEGEND}</small></p>"


def comparison_table(rows) -> ComparisonTable:
    """The comparisons (from compare_with_torchao / compare_with_quanto) as one narrow table, grouped by library."""
    rows = tuple(rows)
    if not rows or not all(isinstance(c, Comparison) for c in rows):
        raise TypeError("rows must be a non-empty list of Comparison objects (from compare_with_torchao / _quanto)")
    return ComparisonTable(rows)
