"""Claims a notebook makes about numbers that differ from CPU to CPU, checked with a stated tolerance.

A trained model's accuracy or a bf16 drift changes in its last digits from one processor to the next (float
sums are added in another order), so a notebook shows such numbers in a cell whose output is not compared,
and next to it states what they show as claims:

    check_claims({"QAT beats PTQ at 2 bits by more than 10 points": qat[2] - ptq[2] > 10})

The result prints one line per claim, ✔ when it holds and ✘ when it does not, so the text is the same on every
machine where the claims hold: nbval compares it, and a learner whose run breaks a claim sees which one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Claims", "check_claims"]


@dataclass(frozen=True)
class Claims:
    """Claims and whether each one holds; `all_hold` is True when every claim holds."""

    results: tuple[tuple[str, bool], ...]

    @property
    def all_hold(self) -> bool:
        return all(ok for _, ok in self.results)

    def __repr__(self) -> str:
        return "\n".join(f"{'✔' if ok else '✘ does not hold:'} {claim}" for claim, ok in self.results)


def check_claims(claims: Mapping[str, bool]) -> Claims:
    """Check each `claim text -> condition`; conditions must be plain or numpy/torch booleans."""
    if not isinstance(claims, Mapping) or not claims:
        raise TypeError(f"claims must be a non-empty dict of 'claim text' -> bool, got {claims!r}")
    results = []
    for text, ok in claims.items():
        if not isinstance(text, str) or not text.strip():
            raise TypeError(f"each claim must be described by a non-empty string, got {text!r}")
        if hasattr(ok, "item") and getattr(ok, "ndim", getattr(ok, "dim", lambda: 0)()) == 0:
            ok = ok.item()  # a numpy or torch 0-d boolean
        if not isinstance(ok, bool):
            raise TypeError(f"claim {text!r}: the condition must be True or False, got {ok!r}")
        results.append((text, ok))
    return Claims(tuple(results))
