"""Observers: how the range [lo, hi] that gets mapped onto [qmin, qmax] is chosen from data.

A quantizer only needs a range per block; everything else follows from `choose_qparams`'
formulas. The choice of range is a trade-off: a wide range keeps outliers (no clipping
error) but makes the step `scale` coarse for everything else (more rounding error).

    MinMaxObserver                 lo, hi = min x, max x over everything seen
    MovingAverageMinMaxObserver    lo <- lo + c (min x_batch - lo), the same for hi
    PercentileObserver             lo, hi = the (100 - p)-th and p-th percentiles: clips outliers
    MSEObserver                    lo, hi = a (min x, max x), a in (0, 1] chosen to minimise
                                   mean (x - fake_quantize(x))^2 per block

Use: `MinMaxObserver(bits=4).observe(x).qparams()`; call `observe` once per calibration
batch. Every observer returns `QParams`, one pair per block of its granularity.
"""

from __future__ import annotations

import torch

from ..core.granularity import Granularity, PerTensor, PerToken, check_granularity
from ..core.primitives import QParams, choose_qparams, fake_quantize
from ..core.validation import check_bits, check_bool, check_float_tensor

__all__ = ["OBSERVERS", "MSEObserver", "MinMaxObserver", "MovingAverageMinMaxObserver", "Observer",
           "PercentileObserver", "block_rows", "make_observer", "qparams_from_range"]


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, bits: int = 8, symmetric: bool = False,
                       granularity: Granularity = PerTensor(), dtype: torch.dtype = torch.float32) -> QParams:
    """Quantization parameters that map [lo, hi] of each block onto [qmin, qmax].

    A min-max rule sees nothing of a block but its min and max, so the two-element block
    [lo, hi] gets exactly the parameters `choose_qparams` gives for any block with that range:
    symmetric scale = max(|lo|, |hi|) / qmax; asymmetric scale = (max(hi, 0) - min(lo, 0)) / (qmax - qmin).

    Shapes: lo, hi `granularity.stats_shape(x.shape)` -> QParams with that scale shape.
    """
    check_float_tensor(lo, "lo")
    check_float_tensor(hi, "hi")
    check_granularity(granularity)
    if lo.shape != hi.shape:
        raise ValueError(f"lo and hi must have the same shape, got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if bool((lo > hi).any()):
        raise ValueError("every lo must be <= its hi")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    pairs = torch.stack([lo.detach().float().reshape(-1), hi.detach().float().reshape(-1)], dim=1)  # (blocks, 2)
    qp = choose_qparams(pairs, bits, symmetric, PerToken())  # scale (blocks, 1)
    return QParams(qp.scale.reshape(lo.shape), qp.zero_point.reshape(lo.shape), bits, symmetric,
                   qp.qmin, qp.qmax, granularity, dtype)


def block_rows(x: torch.Tensor, granularity: Granularity) -> tuple[torch.Tensor, torch.Size]:
    """The elements of each block of `x` as one row, and the stats shape to fold rows back into.

    Shapes: x (...) -> rows (n_blocks, elements_per_block), stats_shape (n_blocks elements).
    """
    check_float_tensor(x)
    check_granularity(granularity).check(x.shape)
    xb = granularity.to_blocks(x)  # block view, e.g. (out, in/g, g)
    dims = granularity.reduce_dims(xb.ndim)
    keep = [d for d in range(xb.ndim) if d not in dims]
    stats_shape = granularity.stats_shape(x.shape)
    rows = xb.permute(*keep, *dims).reshape(stats_shape.numel(), -1)  # (n_blocks, elements_per_block)
    return rows, stats_shape


class Observer:
    """Base class: watch tensors with `observe(x)`, then ask for `range()` or `qparams()`."""

    def __init__(self, bits: int = 8, symmetric: bool = False, granularity: Granularity = PerTensor()):
        self.bits = check_bits(bits)
        self.symmetric = check_bool(symmetric, "symmetric")
        self.granularity = check_granularity(granularity)
        self.stats_shape: torch.Size | None = None
        self.dtype = torch.float32
        self.batches = 0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(bits={self.bits}, symmetric={self.symmetric}, "
                f"granularity={self.granularity})")

    def observe(self, x: torch.Tensor) -> "Observer":
        """Update the statistics with one tensor (one calibration batch). Returns self."""
        check_float_tensor(x)
        self.granularity.check(x.shape)
        rows, stats_shape = block_rows(x.detach().float(), self.granularity)  # (n_blocks, elements)
        if self.stats_shape is not None and stats_shape != self.stats_shape:
            raise ValueError(
                f"{self.granularity} gives stats of shape {tuple(stats_shape)} for this tensor "
                f"(shape {tuple(x.shape)}), but earlier tensors gave {tuple(self.stats_shape)}; "
                "every observed tensor must split into the same blocks")
        self.stats_shape, self.dtype = stats_shape, x.dtype
        self._update(rows)
        self.batches += 1
        return self

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi), each of the stats shape of the observed tensors."""
        if self.batches == 0:
            raise ValueError(f"{type(self).__name__} has not observed any tensor yet; call observe(x) first")
        lo, hi = self._range()
        return lo.reshape(self.stats_shape), hi.reshape(self.stats_shape)

    def qparams(self) -> QParams:
        """QParams for the range chosen so far (see `qparams_from_range`)."""
        lo, hi = self.range()
        return qparams_from_range(lo, hi, self.bits, self.symmetric, self.granularity, self.dtype)

    def _update(self, rows: torch.Tensor) -> None:
        raise NotImplementedError

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class MinMaxObserver(Observer):
    """lo = min x, hi = max x over every tensor observed: never clips, so one outlier sets the step."""

    def _update(self, rows):
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)  # (n_blocks,)
        if self.batches:
            lo, hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
        self.lo, self.hi = lo, hi

    def _range(self):
        return self.lo, self.hi


class MovingAverageMinMaxObserver(MinMaxObserver):
    """lo <- lo + c (min x_batch - lo) (the same for hi): a rare extreme batch moves the range only a little.

    `averaging_constant` c in (0, 1]; c = 1 keeps only the last batch. The first batch sets the range.
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, granularity: Granularity = PerTensor(),
                 averaging_constant: float = 0.1):
        super().__init__(bits, symmetric, granularity)
        if isinstance(averaging_constant, bool) or not isinstance(averaging_constant, (int, float)) \
                or not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be a number in (0, 1], got {averaging_constant!r}")
        self.averaging_constant = float(averaging_constant)

    def _update(self, rows):
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)  # (n_blocks,)
        if self.batches:
            c = self.averaging_constant
            lo, hi = self.lo + c * (lo - self.lo), self.hi + c * (hi - self.hi)
        self.lo, self.hi = lo, hi


class _KeepsValues(Observer):
    """An observer that needs every value seen (percentiles, error search): rows are concatenated."""

    def _update(self, rows):
        self.rows = torch.cat([self.rows, rows], dim=1) if self.batches else rows  # (n_blocks, all elements)
        self._cached_range = None

    def range(self):
        if self.batches and getattr(self, "_cached_range", None) is not None:
            return self._cached_range
        self._cached_range = super().range()
        return self._cached_range


class PercentileObserver(_KeepsValues):
    """lo, hi = the (100 - p)-th and p-th percentiles of each block: the outermost values get clipped.

    `percentile` p in (50, 100]; p = 100 is min-max.
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, granularity: Granularity = PerTensor(),
                 percentile: float = 99.9):
        super().__init__(bits, symmetric, granularity)
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be a number in (50, 100], got {percentile!r}")
        self.percentile = float(percentile)

    def _range(self):
        q = torch.tensor([1.0 - self.percentile / 100.0, self.percentile / 100.0], device=self.rows.device)
        lo, hi = torch.quantile(self.rows, q, dim=1)  # each (n_blocks,)
        return lo, hi


class MSEObserver(_KeepsValues):
    """lo, hi = a (min x, max x) with the a in a grid over (0, 1] that minimises each block's MSE.

    error(a) = mean over the block of (x - fake_quantize(x; range a [min x, max x]))^2
    A smaller a clips the outliers but rounds everything else more finely.
    `grid` is the number of candidates a = 1/grid, 2/grid, ..., 1.
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, granularity: Granularity = PerTensor(),
                 grid: int = 100):
        super().__init__(bits, symmetric, granularity)
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(f"grid must be a positive int, got {grid!r}")
        self.grid = grid

    def errors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid of ratios a (grid,) and each block's MSE at each a (grid, n_blocks)."""
        if self.batches == 0:
            raise ValueError("MSEObserver has not observed any tensor yet; call observe(x) first")
        lo, hi = self.rows.amin(dim=1, keepdim=True), self.rows.amax(dim=1, keepdim=True)  # (n_blocks, 1)
        ratios = torch.arange(1, self.grid + 1, device=self.rows.device) / self.grid  # (grid,)
        errs = []
        for a in ratios:
            qp = qparams_from_range(a * lo, a * hi, self.bits, self.symmetric, PerToken())
            errs.append((fake_quantize(self.rows, qparams=qp) - self.rows).square().mean(dim=1))  # (n_blocks,)
        return ratios, torch.stack(errs)  # (grid,), (grid, n_blocks)

    def _range(self):
        ratios, errs = self.errors()
        best = ratios[errs.argmin(dim=0)]  # (n_blocks,) the first best ratio of each block
        return best * self.rows.amin(dim=1), best * self.rows.amax(dim=1)


OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver,
             "percentile": PercentileObserver, "mse": MSEObserver}


def make_observer(name: str, bits: int = 8, symmetric: bool = False, granularity: Granularity = PerTensor(),
                  **options) -> Observer:
    """An observer by name: 'minmax', 'moving_average', 'percentile' or 'mse' (options go to its class)."""
    if not isinstance(name, str) or name not in OBSERVERS:
        raise ValueError(f"observer must be one of {sorted(OBSERVERS)}, got {name!r}")
    return OBSERVERS[name](bits, symmetric, granularity, **options)
