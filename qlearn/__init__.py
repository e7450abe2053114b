"""qlearn: the quantization code behind the qlearn course. This file only re-exports the public API."""

from . import (bits, calibrate, compare, distill, dtypes, llm, metrics, models, observers, packing, plots, prune, qat,
               sweep, tensors)
from .granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken
from .nn import QuantLinear
from .primitives import QParams, choose_qparams, dequantize, fake_quantize, qrange, quantize
from .quantize_model import QuantizeReport, model_size_bytes, quantize_model, register_method
from .serialize import load_quantized, save_quantized

__version__ = "0.1.0"

__all__ = [
    "Granularity", "PerTensor", "PerChannel", "PerGroup", "PerToken",
    "QParams", "choose_qparams", "quantize", "dequantize", "fake_quantize", "qrange",
    "QuantLinear", "quantize_model", "model_size_bytes", "QuantizeReport", "register_method",
    "save_quantized", "load_quantized",
    "bits", "calibrate", "compare", "distill", "dtypes", "llm", "metrics", "models", "observers", "packing", "plots",
    "prune", "qat", "sweep", "tensors",
]
