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
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..core.validation import check_bits, check_bool
from ..core.granularity import PerChannel
from ..core.primitives import QParams, choose_qparams, qrange, quantize
from ._checks import check_group_size, check_inputs, check_number, check_positive_int, check_weight
from .shrink_grid import check_grid, shrink_params
from .weight import UniformWeight, granularity_for


def hessian(X: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X / n, the Hessian of the layer's squared output error.

    Shapes: X (tokens, in) -> H (in, in) float32.
    """
    X = X.float()
    return 2 * X.T @ X / X.shape[0]


def inverse_hessian_factor(H: torch.Tensor, damp: float) -> torch.Tensor:
    """U, the upper Cholesky factor of (H + damp * mean(diag H) * I)^-1.

    Shapes: H (in, in) -> U (in, in), upper triangular, U^T U = (H + damp * mean(diag H) I)^-1.
    """
    H = H.clone()
    H.diagonal().add_(damp * H.diagonal().mean())
    L, info = torch.linalg.cholesky_ex(H)
    if int(info):
        raise ValueError(f"H + damp * mean(diag H) is not positive definite (damp={damp}); X has fewer independent "
                         "tokens than input features: pass more calibration tokens or a larger damp such as 0.01")
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


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
    check_grid(grid)
    columns, dtype = W.shape[1], W.dtype
    g = columns if group_size is None else group_size

    H = hessian(X.detach().to(W.device))  # (in, in)
    W = W.detach().float().clone()  # (out, in) working copy, updated in place
    dead = H.diagonal() == 0
    H[dead, dead] = 1
    W[:, dead] = 0
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
                grids[gid] = (shrink_params(current, bits, symmetric) if grid == "mse" else
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
