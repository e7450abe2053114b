"""GPTQ (Frantar et al. 2023, arXiv:2210.17323): round one column at a time, push its error onto the rest.

Objective, per layer: argmin over W_hat on the grid of || X W^T - X W_hat^T ||^2, solved greedily with the
Optimal Brain Surgeon update. With H = 2 X^T X / n, quantizing column j with error e = (w_j - q_j) / U[j, j]
is best compensated by W[:, k] -= e * U[j, k] for the columns k > j not yet quantized, where U is the
upper Cholesky factor of H^-1 (Algorithm 1 of the paper; IST-DASLab/gptq gptq.py). Columns are processed
in blocks: inside a block the update is immediate, the columns after it receive the whole block's
update at once ("lazy batch"), which gives the same result with fewer memory passes.

Details, as the reference: damp * mean(diag H) is added to the diagonal; a column that never sees input
(diag H = 0, "dead") gets H[j, j] = 1 and W[:, j] = 0; act_order quantizes columns by decreasing diag H.
Where this differs: group parameters are refitted (min-max, the RTN grid; or with grid="mse" the
reference's shrunk min-max grid of lowest weight error, shrink_grid.py) when the first column of a
group is reached, on the group's current weights, with the pending lazy updates applied, so the
result does not depend on block_size. Groups are always contiguous in the original column order,
also with act_order (the reference groups permuted columns and stores a g_idx), so the result is
stored as a plain per-group grid: codes, scale and zero point, the storage of RTN.

The grid GPTQ rounds onto: "minmax" is RTN's; "mse" is the reference quantizer's `mse=True` grid (`shrink_params`):
min-max spends the whole grid on a row's two extreme weights, so at 2 and 3 bits a few outliers set a wide step and
the bulk is rounded coarsely. Shrinking the range clips the extremes but rounds the bulk finer:

    candidates p_i = 1 - i / grid,  i = 0 .. n - 1,  n = max(1, int(max_shrink * grid))
    scale_i, zero_i = min-max params of p_i * w                     (per row; w (rows, cols))
    err_i = sum_cols |w - Q_i(w)|^norm                               (Q_i: round and clamp on that grid)
    keep, per row, the candidate with the smallest err_i (p_0 = 1, plain min-max, is one: never worse)

The defaults (norm 2.4, grid 100, max_shrink 0.8) are those of IST-DASLab/gptq's `Quantizer` (quant.py), which
tries all 80 candidates; coarse=1 does the same. By default every `coarse`-th candidate is tried first, then the
ones between the best of those and its neighbours: 24 evaluations instead of 80, and a minimum that the tests hold
within 0.1 % of the exhaustive one (where two candidates tie, it may keep another of them). Where this differs from
the reference: a symmetric grid is this package's restricted -qmax..qmax one with zero point 0, not the
reference's unsigned grid centred on (maxq + 1) / 2. The error is the weights' own, not the layer's output: GPTQ
then spends its updates on the output.

Numerics: H is accumulated in float64 and the Cholesky factor is computed for H / mean(diag H). GPTQ's updates
use only the ratios U[j, k] / U[j, j], which do not change when H is scaled, so inputs of any magnitude (1e-20 or
1e30) give the same codes, and every factor fits float32.

Model level: `quantize_model(model, method="gptq", calibration=batches)` runs `quantize_layer` block by block on
inputs from the already quantized blocks (sequential), and stores each result in a QuantLinear.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..core.granularity import PerChannel, PerGroup
from ..core.primitives import QParams, choose_qparams, minmax_params, qrange, quantize
from ..core.validation import (
    check_bits,
    check_bool,
    check_choice,
    check_float_tensor,
    check_group_size,
    check_inputs,
    check_number,
    check_positive_int,
    check_weight,
)
from ..inference.linear import QuantLinear
from ..inference.registry import QuantMethod, get_method, register_method
from .weight import UniformWeight, granularity_for, group_size_of, uniform_layer

__all__ = ["GRIDS", "hessian", "inverse_hessian_factor", "obs_start", "quantize_layer", "quantize_weight",
           "shrink_params"]

GRIDS = ("minmax", "mse")
_CHUNK = 1 << 22  # shrink candidates * rows * cols evaluated at once (16 MiB of float32; at least one candidate)


def hessian(X: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X / n, the Hessian of the layer's squared output error, accumulated in float64.

    Shapes: X (tokens, in) -> H (in, in) float64.
    """
    check_float_tensor(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be (tokens, in), got shape {tuple(X.shape)}")
    X = X.double()
    H = 2 * X.T @ X / X.shape[0]  # (in, in)
    if not bool(torch.isfinite(H).all()):
        raise ValueError("X^T X overflows float64: X's values are too large; rescale X (GPTQ needs only H's ratios)")
    return H


def inverse_hessian_factor(H: torch.Tensor, damp: float) -> torch.Tensor:
    """U, the upper Cholesky factor of (H' + damp * I)^-1 for H' = H / mean(diag H) (see Numerics above).

    Scaling H by c scales U by 1 / sqrt(c); GPTQ and SparseGPT use only ratios of U's entries, so the normalised
    H' gives the same result for inputs of any magnitude and a U that fits float32.
    Shapes: H (in, in), positive semi-definite, diag H > 0 -> U (in, in) float32, upper triangular,
    U^T U = (H' + damp I)^-1.
    """
    check_float_tensor(H, "H")
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square (in, in) matrix, got shape {tuple(H.shape)}")
    damp = check_number(damp, "damp", 0.0)
    if not float(H.diagonal().mean()) > 0:
        raise ValueError("H has no positive diagonal: the calibration inputs are all zero")
    H = H.double() / H.diagonal().mean()  # (in, in), mean(diag H') = 1
    H.diagonal().add_(damp)
    L, info = torch.linalg.cholesky_ex(H)
    if int(info):
        rank = int(torch.linalg.matrix_rank(H))
        raise ValueError(f"H + damp * mean(diag H) * I is not positive definite (damp={damp}): the calibration inputs "
                         f"span only {rank} of their {H.shape[0]} dimensions (fewer independent tokens than input "
                         "features, or linearly dependent features); pass more varied calibration tokens or a damp "
                         "> 0 such as 0.01")
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).float()


def obs_start(W: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The start of the OBS column loop that GPTQ and SparseGPT share: H, and a working copy of W.

        H = 2 X^T X / n (float64; X rescaled first where |X| > 1e100 or < 1e-100, as only H's ratios count)
        dead columns (diag H = 0): H[j, j] = 1 and W[:, j] = 0, as the references do

    Shapes: W (out, in); X (tokens, in) -> W (out, in) float32, a copy to update in place; H (in, in) float64.
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="obs_start")
    return _obs_start(W, X)


def _obs_start(W, X):
    """obs_start without the argument checks."""
    X = X.detach().to(W.device).double()
    top = float(X.abs().max())
    # X^T X of |X| beyond 1e100 (or below 1e-100) over- (under-)flows float64: scale X first, OBS reads only H's ratios
    H = hessian(X if top == 0 or 1e-100 < top < 1e100 else X / top)  # (in, in) float64
    W = W.detach().float().clone()  # (out, in) working copy, updated in place
    dead = H.diagonal() == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    return W, H


def quantize_weight(W: torch.Tensor, X: torch.Tensor, bits: int = 4, group_size: int | None = 128,
                    act_order: bool = False, damp: float = 0.01, block_size: int = 128, symmetric: bool = False,
                    progress: bool = False, grid: str = "minmax") -> UniformWeight:
    """GPTQ onto the grid of `group_size` input columns (None: one scale per output row).

    grid: "minmax" (RTN's grid) or "mse" (min-max shrunk per row to the lowest sum |w - Q(w)|^2.4, the
    reference's `mse=True`: better at 2 and 3 bits, a little slower).

    for each column j (by decreasing diag H when act_order):
        q_j = Q(w_j) on its group's grid;   e = (w_j - q_j) / U[j, j];   W[:, k>j] -= e U[j, k>j]

    Shapes: W (out, in); X (tokens, in), needed -> UniformWeight of W (out, in).
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="gptq")
    check_bits(bits)
    group_size = check_group_size(group_size, W.shape[1])
    check_bool(act_order, "act_order")
    damp = check_number(damp, "damp", 0.0)
    check_positive_int(block_size, "block_size")
    check_bool(symmetric, "symmetric")
    check_bool(progress, "progress")
    check_choice(grid, "grid", GRIDS)
    columns, dtype = W.shape[1], W.dtype
    g = columns if group_size is None else group_size

    W, H = _obs_start(W, X)  # (out, in) float32 working copy, (in, in) float64
    perm = torch.argsort(H.diagonal(), descending=True) if act_order else torch.arange(columns, device=W.device)
    invperm = torch.argsort(perm)
    W, H = W[:, perm], H[perm][:, perm]  # (out, in), (in, in) in processing order
    U = inverse_hessian_factor(H, damp)  # (in, in) upper
    group_of = (perm // g).tolist()  # processing position -> group in the original column order
    grids: dict[int, QParams] = {}
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # group -> its scale and zero point as (out,) floats
    qmin, qmax = qrange(bits)
    Q = torch.zeros_like(W)  # (out, in) W_hat in processing order

    for i1 in tqdm(range(0, columns, block_size), disable=not progress, desc="gptq"):
        i2 = min(i1 + block_size, columns)
        W1 = W[:, i1:i2].clone()  # (out, count) this block, updated immediately
        Err1 = torch.zeros_like(W1)  # (out, count) scaled errors e of the block's columns
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            gid = group_of[i1 + i]
            if gid not in grids:  # first column of a group: fit its grid on the current weights
                cols = invperm[gid * g:(gid + 1) * g]  # (g,) processing positions, original order
                current = W[:, cols] - Err1 @ U[i1:i2, cols]  # (out, g) with this block's updates so far
                grids[gid] = (_shrink_params(current, bits, symmetric) if grid == "mse" else
                              choose_qparams(current, bits=bits, symmetric=symmetric, granularity=PerChannel(0)))
                rows[gid] = grids[gid].scale[:, 0], grids[gid].zero_point[:, 0].float()  # (out,) each
            w, (scale, zero) = W1[:, i], rows[gid]
            q = scale * ((w / scale).round() + zero).clamp(qmin, qmax).sub(zero)  # (out,) = fake_quantize, inline
            Q[:, i1 + i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]  # (out, count - i) immediate OBS update
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]  # (out, in - i2) lazy batch update

    granularity = granularity_for(group_size)
    scale = torch.stack([grids[k].scale for k in range(columns // g)], dim=1)  # (out, groups, 1)
    zero_point = torch.stack([grids[k].zero_point for k in range(columns // g)], dim=1)  # (out, groups, 1)
    if group_size is None:
        scale, zero_point = scale[:, 0], zero_point[:, 0]  # (out, 1)
    qparams = QParams(scale, zero_point, bits, symmetric, qmin, qmax, granularity, torch.float32)
    W_q = quantize(Q[:, invperm], qparams)  # (out, in) int8: exact, Q already lies on the grid
    return UniformWeight.from_codes(W_q, scale, None if symmetric else zero_point, bits, granularity, dtype)


# ---- the shrunk min-max grid (grid="mse") ---------------------------------------------------------------------

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
    check_bits(bits)
    check_bool(symmetric, "symmetric")
    norm = check_number(norm, "norm", 0.0, low_inclusive=False)
    check_positive_int(grid, "grid")
    max_shrink = check_number(max_shrink, "max_shrink", 0.0, high=1.0, high_inclusive=False)
    check_positive_int(coarse, "coarse")
    return _shrink_params(w.detach(), bits, symmetric, norm, grid, max_shrink, coarse)


def _shrink_params(w, bits, symmetric, norm=2.4, grid=100, max_shrink=0.8, coarse=5) -> QParams:
    """shrink_params without the argument checks (GPTQ's inner loop calls it once per group)."""
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


# ---- model level ---------------------------------------------------------------------------------------------

def quantize_layer(name, linear, X, bits, granularity, symmetric, act_order=False, damp=0.01, block_size=128,
                   grid="minmax", activations=None, kernel="auto") -> QuantLinear:
    """GPTQ's codes on the min-max (or with grid="mse" the shrunk) grid, in a QuantLinear.

    Shapes: linear.weight (out, in), X (tokens, in) -> QuantLinear (out, in).
    """
    get_method("gptq").check_layer(linear, X, bits, granularity, symmetric)
    qw = quantize_weight(linear.weight.detach(), X.to(linear.weight.device), bits=bits,
                         group_size=group_size_of(granularity), act_order=act_order, damp=damp,
                         block_size=block_size, symmetric=symmetric, grid=grid)
    return uniform_layer(linear, qw, activations, kernel)


register_method(QuantMethod("gptq", quantize_layer, needs_calibration=True, sequential=True, symmetric=(False, True),
                            granularities=(PerChannel, PerGroup), description="GPTQ (sequential, QuantLinear)"),
                replace=True)
