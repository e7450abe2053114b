"""qlearn: the quantization code behind the qlearn course. This file only re-exports the public API."""

from . import dtypes, metrics, models, plots
from .granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken
from .primitives import QParams, choose_qparams, dequantize, fake_quantize, qrange, quantize

__version__ = "0.1.0"

__all__ = [
    "Granularity", "PerTensor", "PerChannel", "PerGroup", "PerToken",
    "QParams", "choose_qparams", "quantize", "dequantize", "fake_quantize", "qrange",
    "dtypes", "metrics", "models", "plots",
]
