"""qlearn side by side with torchao and optimum-quanto on the same tensor: where they agree exactly, and by how much they differ.

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

from dataclasses import dataclass

import torch

from . import metrics
from ._quiet import silence_torchao_import_noise
from ._validate import check_bits, check_bool, check_float_tensor
from .granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken, check_granularity
from .primitives import choose_qparams, dequantize, quantize, qrange


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
    from torchao.quantization.quant_primitives import (MappingType, choose_qparams_affine,
                                                        dequantize_affine, quantize_affine)
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
    config = f"{bits}-bit {'symmetric' if symmetric else 'asymmetric'} {granularity}" + (
        "" if restricted or not symmetric else ", qlearn restricted=False")
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
        return _compare("optimum-quanto", "qint8 symmetric per channel", W, qp, scale,
                        torch.zeros_like(scale, dtype=torch.int32), qt._data, qt.dequantize())
    if weights != "qint4":
        raise ValueError(f"weights must be 'qint8' or 'qint4', got {weights!r}")
    qp = choose_qparams(W, 4, False, PerGroup(group_size))
    scale, shift = MaxOptimizer()(W, qtype=qint4, axis=0, group_size=group_size, zeropoint=zeropoint)  # (out*in/g, 1)
    qt = quantize_weight(W, qint4, axis=0, scale=scale, shift=shift, group_size=group_size, optimized=False)
    data = qt._data.unpack() if hasattr(qt._data, "unpack") else qt._data  # (out*in/g, g) codes 0..15
    offset = 2 ** (qint4.bits - 1)  # quanto's unsigned codes = qlearn's signed codes + 8
    zero_point = shift.int() - offset if zeropoint else None
    config = f"qint4 affine group {group_size}, " + ("integer zero point" if zeropoint else "float shift (default)")
    return _compare("optimum-quanto", config, W, qp, scale, zero_point, data.int() - offset, qt.dequantize())
