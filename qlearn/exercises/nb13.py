"""Exercises of notebook 13 (pruning a language model: Wanda, SparseGPT, 2:4, distillation).

Each check takes what the notebook uses, computes the answer itself and compares. Answers may be any number: int,
float, numpy scalar or a one-element tensor.
"""

from __future__ import annotations

import math

import torch

from ..compression.prune import nm_mask
from ..core.validation import check_inputs, check_positive_int, check_weight
from ..core.validation import check_number as check_real
from ..methods.wanda import prune_weight as wanda_prune
from ._feedback import Feedback, Mistake, check_number

__all__ = ["check_2to4_bytes", "check_recovered_share", "check_wanda_rescues", "two_four_bytes", "wanda_rescues"]


def wanda_rescues(W: torch.Tensor, X: torch.Tensor) -> int:
    """How many weights Wanda keeps at 2:4 that magnitude 2:4 would remove. Shapes: W (out, in), X (t, in) -> int."""
    check_weight(W)
    check_inputs(X, W, required=True, method="wanda")
    _, keep = wanda_prune(W, X, pattern="2:4", return_mask=True)  # (out, in)
    return int((keep & ~nm_mask(W.detach().float().abs(), 2, 4)).sum())


def check_wanda_rescues(W: torch.Tensor, X: torch.Tensor, answer) -> Feedback:
    """Exercise 1: of the weights Wanda keeps at 2:4, how many would magnitude 2:4 prune?"""
    expected = wanda_rescues(W, X)
    norms = torch.linalg.vector_norm(X.detach().float(), dim=0)  # (in,)
    squared = nm_mask(W.detach().float().abs() * norms ** 2, 2, 4)  # (out, in): the score with ||X_j||^2
    magnitude = nm_mask(W.detach().float().abs(), 2, 4)
    mistakes = [Mistake(2 * expected, "you counted every place where the two masks differ: each group of 4 that "
                        "swaps one weight differs twice (one kept, one pruned); count only Wanda's kept ones"),
                Mistake(int((squared & ~magnitude).sum()), "that is with ||X_j||^2; Wanda multiplies |W_ij| by the "
                        "norm itself, ||X_j||_2 (torch.linalg.vector_norm(X, dim=0))"),
                Mistake(expected / W.numel(), "that is a fraction of the weights; give their number")]
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected], count=True,
        right_message=f"{expected} of the {W.numel() // 2} weights Wanda keeps ({expected / (W.numel() // 2):.1%}) "
                      "are ones magnitude would throw away: small weights on the inputs with large activations.",
        wrong_message="Wanda's keep-mask: wanda.prune_weight(W, X, pattern='2:4', return_mask=True)[1]; magnitude's: "
                      "nm_mask(W.abs(), 2, 4); count where the first is True and the second False.",
        not_a_number="answer with a number of weights (replace the None)")


def two_four_bytes(out_features: int, in_features: int, value_bytes: int = 2) -> int:
    """Bytes of an (out, in) weight stored 2:4: in / 2 values per row + a 2-bit index per kept value."""
    check_positive_int(out_features, "out_features")
    check_positive_int(in_features, "in_features")
    check_positive_int(value_bytes, "value_bytes")
    kept = out_features * in_features // 2
    return kept * value_bytes + math.ceil(kept * 2 / 8)


def check_2to4_bytes(out_features: int, in_features: int, answer, value_bytes: int = 2) -> Feedback:
    """Exercise 2: the bytes of an (out, in) float16 weight in NVIDIA's 2:4 format (values + 2-bit indices)."""
    expected = two_four_bytes(out_features, in_features, value_bytes)
    numel, kept = out_features * in_features, out_features * in_features // 2
    mistakes = [Mistake(numel * value_bytes, "that is the dense weight: 2:4 stores only half the values"),
                Mistake(kept * value_bytes, "those are the values alone: add the 2-bit index of each kept value"),
                Mistake(kept * value_bytes + numel * 2 // 8, "you gave every weight a 2-bit index; only the kept "
                        "values have one (2 per group of 4)"),
                Mistake(8 * expected, "that is in bits: divide by 8")]
    return check_number(
        answer, expected, mistakes=[m for m in mistakes if m.value != expected], count=True,
        right_message=f"{expected} bytes, {expected / (numel * value_bytes):.4f} of the dense {numel * value_bytes}: "
                      "half the values plus 1 bit per weight of metadata (as a bitmask would be at 50 %).",
        wrong_message="kept = out * in / 2 values of value_bytes each, plus 2 bits for each kept value.",
        not_a_number="answer with a number of bytes (replace the None)")


def check_recovered_share(dense: float, pruned: float, distilled: float, answer) -> Feedback:
    """Exercise 3: the share (0..1) of the pruning's perplexity rise that distillation took back."""
    for value, name in ((dense, "dense"), (pruned, "pruned"), (distilled, "distilled")):
        check_real(value, name, 0.0, low_inclusive=False)
    if not pruned > dense:
        raise ValueError(f"pruned ({pruned}) must be above dense ({dense}): pruning raised the perplexity")
    expected = (pruned - distilled) / (pruned - dense)
    mistakes = [Mistake(100 * expected, "that is a percentage: give the fraction (divide by 100)"),
                Mistake(1 - expected, "that is the share of the rise still left; give the share taken back"),
                Mistake((pruned - distilled) / pruned, "you divided by the pruned perplexity; divide by the rise, "
                        "pruned - dense"),
                Mistake(distilled / pruned, "that is a ratio of perplexities, not a share of the rise")]
    return check_number(
        answer, expected, tolerance=1e-3, mistakes=[m for m in mistakes if abs(m.value - expected) > 1e-3],
        right_message=f"{expected:.1%} of the rise ({pruned:.2f} - {dense:.2f}) is taken back.",
        wrong_message="(pruned - distilled) / (pruned - dense).",
        not_a_number="answer with a fraction between 0 and 1 (replace the None)")
