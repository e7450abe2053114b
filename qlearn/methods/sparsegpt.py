"""SparseGPT (Frantar and Alistarh 2023, arXiv:2301.00774): GPTQ's column loop with zeros instead of rounding.

Objective, per layer: argmin over a mask M (a fraction s of zeros) and the kept weights W_hat of
|| X W^T - X (M * W_hat)^T ||^2, solved greedily with the Optimal Brain Surgeon update of GPTQ (gptq.py):
with H = 2 X^T X / n and U the upper Cholesky factor of H^-1, the columns are processed left to right, and
column j's change e = (w_j - q_j) / U[j, j] is compensated by W[:, k] -= e * U[j, k] on the columns k > j. GPTQ
sets q_j to the grid point nearest w_j; SparseGPT sets q_j = 0 where the mask prunes and q_j = w_j elsewhere
(or, with bits=, the kept weight's grid point: pruning and quantization in one pass, the paper's joint mode).

The mask is chosen block by block (Algorithm 1, "adaptive mask selection"): when the loop reaches a block of
block_size columns, it prunes the weights of lowest OBS error w^2 / [H_F^-1]_jj over the block, on the weights
as updated so far. [H_F^-1]_jj, the inverse Hessian of the columns not yet processed, is U[j, j]^2 (the
Cholesky factor holds all those inverses at once), so the score is w^2 / U[j, j]^2, the reference's
`W1 ** 2 / d ** 2`. With an n:m pattern the mask of each m columns is chosen when the loop reaches the first
of them, n zeros per row there (the reference's prunen / prunem).

How many weights a block prunes (mask="row", the default): the course wants exactly int(in * s) zeros in
every row, so each row prunes, in the block of columns [i1, i2), its k = int(i2 * s) - int(i1 * s) lowest
scores. These counts add up to int(in * s) per row, and each block still chooses which of its columns to
prune. mask="block" is the reference's rule (IST-DASLab/sparsegpt sparsegpt.py, fasterprune): one threshold
over the block's out x block_size scores, thresh = sorted(scores)[int(numel * s)], pruning every score <=
thresh, so rows differ in sparsity, and each block prunes int(numel * s) + 1 weights (more on ties): even at
sparsity 0 it removes the lowest-scoring weight of each block. It is kept as is so the masks match. Free
to spread the zeros unevenly over rows, it reaches a lower layer error than "row" (3 to 20 % lower on the
MiniLM and SmolLM2 layers measured at 50 %). Ties between equal scores in an n:m group go to the earlier
column (a stable sort; the reference's topk may pick another of the tied, which only happens between weights
that are 0 already and changes no weight).

SparseGPT fits the weights to H, the calibration inputs' statistics: with fewer calibration tokens than a few
times in_features it fits them too well, and its error on other inputs can exceed magnitude pruning's.

As the reference: damp * mean(diag H) on the diagonal; a column that never sees input (diag H = 0, "dead")
gets H[j, j] = 1 and W[:, j] = 0 (its weights score 0, so they are pruned first, and a dead column's kept
weights are 0 too: the only way a row ends with more zeros than int(in * s), besides a kept weight that the
joint mode rounds to 0). Simplified / different: the joint mode fits the course's min-max grid (RTN's) per row
or per group of `group_size` columns, as gptq.py does: on the group's current weights (the pruned ones
included, as the reference fits its grid on the dense W) when its first column is reached; the reference
fits one asymmetric grid per row before the loop, the same thing when group_size=None and no column is dead.
H is 2 X^T X / tokens (gptq.hessian); the reference divides by the number of sequences instead, a scale that
changes no mask and no weight (the damping is relative to mean(diag H)).
The mask is a tensor-level result; the model-level pass (block by block through the model) lives elsewhere.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..compression.prune import check_pattern, nm_mask, row_mask
from ..core.granularity import PerChannel
from ..core.primitives import choose_qparams, fake_quantize
from ..core.validation import (
    check_bits,
    check_bool,
    check_choice,
    check_group_size,
    check_inputs,
    check_number,
    check_positive_int,
    check_weight,
)
from .gptq import _obs_start, inverse_hessian_factor

__all__ = ["MASKS", "prune_weight"]

MASKS = ("row", "block")


def _block_mask(scores: torch.Tensor, sparsity: float, i1: int, i2: int, mask: str) -> torch.Tensor:
    """Keep-mask of one block of columns [i1, i2) from its OBS scores. Shapes: scores (out, i2 - i1) -> same."""
    if mask == "row":  # exactly int(i2 s) - int(i1 s) per row: int(in s) per row over all blocks
        return row_mask(scores, int(i2 * sparsity) - int(i1 * sparsity))
    thresh = torch.sort(scores.flatten())[0][int(scores.numel() * sparsity)]  # the reference's threshold
    return scores > thresh


@torch.no_grad()
def prune_weight(W: torch.Tensor, X: torch.Tensor, sparsity: float = 0.5, pattern: str | None = None,
                 block_size: int = 128, damp: float = 0.01, bits: int | None = None, group_size: int | None = None,
                 symmetric: bool = False, mask: str = "row", return_mask: bool = False, progress: bool = False):
    """SparseGPT: prune W to `sparsity` (or an n:m pattern) with the OBS update on the kept weights.

    for each block of block_size columns [i1, i2):
        keep[:, i1:i2] = mask of the block from scores w^2 / U[j, j]^2       (pattern=None)
        for each column j in the block:
            keep[:, j:j+m] = n:m mask from w^2 / U[j, j]^2 when j % m == 0  (pattern="n:m")
            q_j = w_j where kept, 0 where pruned;  with bits=: q_j = Q(q_j) on its group's grid
            e = (w_j - q_j) / U[j, j];   W[:, k>j] -= e U[j, k>j]

    sparsity in [0, 1): mask="row" prunes exactly int(in * sparsity) weights of every row; mask="block" is the
    reference's per-block threshold (see the module docstring). pattern="2:4" or "4:8": exactly n zeros in every
    m consecutive inputs of a row (sparsity must be n / m, the default 0.5; block_size a multiple of m).
    bits=None: the kept weights stay float; bits=2..8: the joint mode, each kept weight on the min-max grid of
    its row (group_size=None) or its group of group_size columns, symmetric or not, as gptq.quantize_weight.

    Returns the pruned float weight W_p (dequantized with bits=), in W's dtype; with return_mask=True, (W_p, keep).

    Shapes: W (out, in); X (tokens, in) -> W_p (out, in) [, keep (out, in) bool].
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="sparsegpt")
    columns, dtype = W.shape[1], W.dtype
    sparsity = check_number(sparsity, "sparsity", 0.0, high=1.0, high_inclusive=False)
    nm = check_pattern(pattern, columns, sparsity)
    check_positive_int(block_size, "block_size")
    if nm is not None and block_size % nm[1]:
        raise ValueError(f"block_size={block_size} must be a multiple of {nm[1]} for pattern {pattern!r}, so that "
                         "no group of the pattern straddles two blocks")
    damp = check_number(damp, "damp", 0.0)
    if bits is not None:
        check_bits(bits)
    group_size = check_group_size(group_size, columns)
    check_bool(symmetric, "symmetric")
    if bits is None and (group_size is not None or symmetric):
        raise ValueError("group_size and symmetric describe the grid of the joint mode: pass bits= (2..8) too, or "
                         "leave them at None and False")
    check_choice(mask, "mask", MASKS)
    check_bool(return_mask, "return_mask")
    check_bool(progress, "progress")
    g = columns if group_size is None else group_size

    W, H = _obs_start(W, X)  # (out, in) float32 working copy, (in, in) float64; dead columns fixed
    U = inverse_hessian_factor(H, damp)  # (in, in) upper, U^T U = H^-1
    d = U.diagonal()  # (in,) the reference's d
    keep = torch.ones_like(W, dtype=torch.bool)  # (out, in)
    grids = {}  # group -> its QParams, fitted when the loop reaches the group's first column

    for i1 in tqdm(range(0, columns, block_size), disable=not progress, desc="sparsegpt"):
        i2 = min(i1 + block_size, columns)
        W1 = W[:, i1:i2].clone()  # (out, count) this block, updated immediately
        Q1 = torch.zeros_like(W1)  # (out, count) the block's final values
        Err1 = torch.zeros_like(W1)  # (out, count) scaled changes e of the block's columns
        U1, keep1 = U[i1:i2, i1:i2], keep[:, i1:i2]  # keep1: a view, written in place
        if nm is None:
            keep1[:] = _block_mask(W1 ** 2 / d[None, i1:i2] ** 2, sparsity, i1, i2, mask)
        for i in range(i2 - i1):
            w = W1[:, i]  # (out,)
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                keep1[:, i:i + m] = nm_mask(W1[:, i:i + m] ** 2 / d[None, i1 + i:i1 + i + m] ** 2, n, m)
            q = torch.where(keep1[:, i], w, torch.zeros((), device=w.device))  # (out,)
            if bits is not None:
                gid = (i1 + i) // g
                if gid not in grids:  # first column of a group: fit its grid on the current weights
                    current = W[:, gid * g:(gid + 1) * g] - Err1 @ U[i1:i2, gid * g:(gid + 1) * g]  # (out, g)
                    grids[gid] = choose_qparams(current, bits=bits, symmetric=symmetric, granularity=PerChannel(0))
                q = fake_quantize(q[:, None], qparams=grids[gid])[:, 0]  # (out,) on the grid; a pruned 0 stays 0
            Q1[:, i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]  # (out, count - i) immediate OBS update
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]  # (out, in - i2) lazy batch update

    W_p = W.to(dtype)  # (out, in)
    return (W_p, keep) if return_mask else W_p
