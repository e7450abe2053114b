"""Checks for the notebooks' exercises: one module per notebook (nb01.py, nb02.py, ...).

Each `check_...` function returns a `Feedback` that shows as a right-or-wrong message in a
notebook and is truthy only when the answer is right.
"""

from ._feedback import Feedback

__all__ = ["Feedback"]
