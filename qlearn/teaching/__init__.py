"""Helpers only the notebooks use, part of the teaching face with plots/, widgets/ and exercises/.

    course   the course map, run times, the environment check of 00_start_here
    claims   check_claims: the claims a notebook makes about CPU-dependent numbers
    compare  the same tensor through torchao and optimum-quanto, and how far each is from qlearn
    sweep    round trips and SQNR sweeps over bits and granularity
    timing   median timing of several models taking turns

The top layer: it may import anything below; nothing below imports it.
"""

from . import claims, compare, course, sweep, timing

__all__ = ["claims", "compare", "course", "sweep", "timing"]
