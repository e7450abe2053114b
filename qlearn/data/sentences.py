"""Short sentences for calibrating activation quantizers, written for this course (no other source).

`qlearn.data.models.SENTENCES` are the sentences the notebooks *evaluate* on. A method that sets its
scales from data (static per-tensor activation scales, SmoothQuant's per-channel maxima, the choice of
alpha) calibrates on `CALIBRATION` instead: other topics, other words, so no method is scored on the
text it was tuned on.
"""

from __future__ import annotations

__all__ = ["CALIBRATION"]

CALIBRATION = (
    "The night train crossed the mountains under a full moon.",
    "Please send me the meeting notes before Friday.",
    "A violin needs new strings every few months.",
    "Heavy snow closed the road to the village for three days.",
    "The library lends laptops to students during exams.",
    "Tomatoes ripen faster on a sunny balcony.",
    "Our team fixed the bug that crashed the login page.",
    "The river floods the meadow almost every spring.",
    "She ran her first marathon in just under four hours.",
    "Volcanoes release gas long before they erupt.",
    "The bakery on the corner sells cinnamon rolls at dawn.",
    "Electric buses are quieter than diesel ones.",
)
