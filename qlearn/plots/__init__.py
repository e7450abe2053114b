"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure."""

from .errors import error_histogram

__all__ = ["error_histogram"]
