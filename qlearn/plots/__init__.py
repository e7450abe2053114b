"""Pure plotting functions: each takes tensors or numbers and returns a matplotlib Figure."""

from .channels import channel_ranges
from .errors import error_histogram
from .heatmaps import quantization_heatmaps
from .sweeps import sqnr_vs_bits, sqnr_vs_effective_bits

__all__ = ["error_histogram", "quantization_heatmaps", "sqnr_vs_bits", "channel_ranges", "sqnr_vs_effective_bits"]
