"""Temporary: the checks moved to qlearn.core.validation (this module goes with the methods layout change)."""

from ..core.validation import (check_group_size, check_inputs, check_number, check_positive_int,  # noqa: F401
                               check_weight)
