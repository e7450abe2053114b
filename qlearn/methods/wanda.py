"""Wanda (Sun, Liu, Bair and Kolter 2023, arXiv:2306.11695): prune by |weight| x ||input||, per output row.

"Pruning by Weights and activations". A weight matters as much as what it adds to its output, and
|W_ij X_tj| is large when either the weight or its input feature is. LLMs have a few input features with
huge activations (the outliers of notebook 09), so a small weight on one of them can matter more than a
large weight elsewhere: magnitude alone prunes the wrong ones. Wanda's score is

    S_ij = |W_ij| * ||X_j||_2          (||X_j||_2: the norm of input feature j over all calibration tokens)

and the comparison group is one output row: every row i loses its int(in * s) lowest-scoring weights, so every
output keeps the same number of inputs (the paper finds this per-output group clearly better than a per-layer
one for LLMs). With an n:m pattern, every m consecutive inputs of a row lose their n lowest scores. The
kept weights are not changed: no update, no Hessian, one pass.

Objective (a proxy, nothing is solved): for each row i, remove the set P_i, |P_i| = int(in * s), that minimises
sum over j in P_i of S_ij, a cheap estimate of the row's output error || X_P W_iP^T ||.

As the reference (locuslab/wanda lib/prune.py, prune_wanda): ties in a row go to the earlier input (its stable
sort), the count per row is int(in * sparsity). In an n:m group the earlier input goes first too (a stable
sort), where the reference's topk may pick another of the tied: between equal scores only, such as two zero
weights, so no weight differs. Simplified: the reference accumulates ||X_j||^2 / (number of
batches) over its batches; a factor shared by all columns changes no row's order, so here it is the plain norm
of one X (tokens, in). Its "variant" (a cumulative-score threshold per row) and its model-level pass (block by
block through the model) are not part of this tensor-level file.
"""

from __future__ import annotations

import torch

from ..compression.prune import check_pattern, nm_mask, row_mask
from ..core.validation import check_bool, check_inputs, check_number, check_weight

__all__ = ["prune_weight", "scores"]


def _scores(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """S = |W| * ||X_j||_2 in float32. Shapes: W (out, in), X (tokens, in) -> S (out, in)."""
    norms = torch.linalg.vector_norm(X.detach().to(W.device).float(), dim=0)  # (in,)
    S = W.detach().float().abs() * norms[None, :]  # (out, in)
    if not bool(torch.isfinite(S).all()):
        raise ValueError("|W| * ||X_j|| overflows float32: the weights or inputs are too large to score")
    return S


def scores(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Wanda's score of every weight: S_ij = |W_ij| * ||X_j||_2, float32.

    Shapes: W (out, in); X (tokens, in) -> S (out, in).
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="wanda")
    return _scores(W, X)


def prune_weight(W: torch.Tensor, X: torch.Tensor, sparsity: float = 0.5, pattern: str | None = None,
                 return_mask: bool = False):
    """W with, in every output row, the weights of lowest |W_ij| * ||X_j||_2 set to 0; the others unchanged.

    pattern=None: each row loses exactly int(in * sparsity) weights.
    pattern="2:4" or "4:8": each m consecutive inputs of a row lose their n lowest scores (sparsity must then
    be n / m = 0.5, the default).

        S = |W| * ||X_j||_2;   keep = False at the k lowest S of each row (or n of each m);   W_p = W * keep

    return_mask=True returns (W_p, keep) instead of W_p.

    Shapes: W (out, in); X (tokens, in) -> W_p (out, in) in W's dtype [, keep (out, in) bool].
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="wanda")
    sparsity = check_number(sparsity, "sparsity", 0.0, high=1.0, high_inclusive=False)
    nm = check_pattern(pattern, W.shape[1], sparsity)
    check_bool(return_mask, "return_mask")
    S = _scores(W, X)  # (out, in)
    keep = nm_mask(S, *nm) if nm is not None else row_mask(S, int(W.shape[1] * sparsity))  # (out, in)
    W_p = torch.where(keep, W.detach(), torch.zeros((), dtype=W.dtype, device=W.device))  # (out, in)
    return (W_p, keep) if return_mask else W_p
