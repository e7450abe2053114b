"""A min-max grid shrunk until the weights' rounding error is smallest (the GPTQ reference's `mse=True` grid).

Min-max spends the whole grid on a row's two extreme weights. At 2 and 3 bits a few outliers then set a wide
step and the bulk of the weights is rounded coarsely. Shrinking the range clips the extremes but rounds the
bulk finer:

    candidates p_i = 1 - i / grid,  i = 0 .. n - 1,  n = max(1, int(max_shrink * grid))
    scale_i, zero_i = min-max params of p_i * w                     (per row; w (rows, cols))
    err_i = sum_cols |w - Q_i(w)|^norm                               (Q_i: round and clamp on that grid)
    keep, per row, the candidate with the smallest err_i (p_0 = 1, plain min-max, is one: never worse)

The defaults (norm 2.4, grid 100, max_shrink 0.8) are those of IST-DASLab/gptq's `Quantizer` (quant.py), which
tries all 80 candidates; coarse=1 does the same. By default every `coarse`-th candidate is tried first, then
the ones between the best of those and its neighbours: 24 evaluations instead of 80, and a minimum that the
tests hold within 0.1 % of the exhaustive one (where two candidates tie, it may keep another of them).
Where this differs from the reference: the grid is this package's (primitives.minmax_params), so a symmetric
grid is the restricted -qmax..qmax one with zero point 0, not the reference's unsigned grid centred on
(maxq + 1) / 2. The error is the weights' own, not the layer's output: GPTQ then spends its updates on the output.
"""

from __future__ import annotations

import torch

from ..core.granularity import PerChannel
from ..core.primitives import QParams, minmax_params, qrange
from ..core.validation import check_bits, check_bool, check_float_tensor
from ._checks import check_number, check_positive_int

GRIDS = ("minmax", "mse")
_CHUNK = 1 << 22  # candidates * rows * cols evaluated at once (16 MiB of float32; at least one candidate)


def check_grid(grid) -> str:
    """Raise unless `grid` names a grid this package fits: "minmax" or "mse"."""
    if not isinstance(grid, str):
        raise TypeError(f"grid must be a string, one of {GRIDS}, got {grid!r}")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS} ('mse': min-max shrunk to the lowest weight error), "
                         f"got {grid!r}")
    return grid


def _best_of(w, extremes, p, bits, symmetric, norm):
    """The lowest-error candidate per row among shrink factors p.

    Shapes: w (rows, cols), extremes (rows, 2) = (min, max) per row, p (S,) or (S, rows, 1)
    -> err, scale (rows, 1) float32, zero_point (rows, 1) int32, index (rows, 1) into the S candidates.
    """
    qmin, qmax = qrange(bits)
    p = p[:, None, None] if p.ndim == 1 else p  # (S, 1 or rows, 1)
    best = None
    step = max(1, _CHUNK // w.numel())
    for c in range(0, p.shape[0], step):
        scale, zero = minmax_params(extremes[None] * p[c:c + step], 2, bits, symmetric)  # (s, rows, 1) each
        zf = zero.float()
        err = (w / scale).round_().add_(zf).clamp_(qmin, qmax).sub_(zf).mul_(scale).sub_(w)  # (s, rows, cols)
        err = err.abs_().pow_(norm).sum(2, keepdim=True)  # (s, rows, 1)
        e, k = err.min(0)  # (rows, 1): the first of equal errors, as a loop keeping strict improvements does
        found = (e, scale.gather(0, k[None])[0], zero.gather(0, k[None])[0], k + c)
        if best is None:
            best = found
        else:
            better = found[0] < best[0]
            best = tuple(torch.where(better, new, old) for new, old in zip(found, best))
    return best


def shrink_params(w: torch.Tensor, bits: int, symmetric: bool, norm: float = 2.4, grid: int = 100,
                  max_shrink: float = 0.8, coarse: int = 5) -> QParams:
    """Per-row quantization parameters of w on the shrunk min-max grid with the lowest sum |w - Q(w)|^norm.

    Shapes: w (rows, cols) float32 -> QParams with scale (rows, 1) float32, zero_point (rows, 1) int32,
    granularity PerChannel(0): the layout choose_qparams(w, granularity=PerChannel(0)) gives.
    """
    check_float_tensor(w, "w")  # a non-empty float tensor, finite
    if w.dtype != torch.float32:
        raise TypeError(f"w must be float32 (a block of weights as GPTQ holds them), got {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (rows, cols), got shape {tuple(w.shape)}")
    w = w.detach()
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    norm = check_number(norm, "norm", 0.0, low_inclusive=False)
    if norm == float("inf"):
        raise ValueError("norm must be finite (the reference uses 2.4)")
    check_positive_int(grid, "grid")
    max_shrink = check_number(max_shrink, "max_shrink", 0.0)
    if max_shrink >= 1:
        raise ValueError(f"max_shrink must be in [0, 1): the largest share of the range cut off, got {max_shrink}")
    check_positive_int(coarse, "coarse")
    n = max(1, int(max_shrink * grid))  # candidates i = 0 .. n - 1, p_i = 1 - i / grid
    # min and max of p * w are p * (min, max): the params of p * w are those of its two extremes times p
    extremes = torch.cat([w.amin(1, keepdim=True), w.amax(1, keepdim=True)], 1)  # (rows, 2)
    first = torch.arange(0, n, coarse, device=w.device)  # (S,) every coarse-th candidate, i = 0 first
    err, scale, zero, k = _best_of(w, extremes, 1 - first.float() / grid, bits, symmetric, norm)
    if coarse > 1:  # the candidates between the best coarse one and its neighbours
        offsets = torch.cat([torch.arange(1 - coarse, 0), torch.arange(1, coarse)]).to(w.device)  # (2 coarse - 2,)
        near = (first[k] + offsets[:, None, None]).clamp(0, n - 1)  # (2 coarse - 2, rows, 1)
        found = _best_of(w, extremes, 1 - near.float() / grid, bits, symmetric, norm)
        better = found[0] < err
        scale, zero = torch.where(better, found[1], scale), torch.where(better, found[2], zero)
    qmin, qmax = qrange(bits)
    return QParams(scale, zero, bits, symmetric, qmin, qmax, PerChannel(0), torch.float32)
