"""qlearn: the quantization code behind the qlearn course. This file only re-exports the public API.

The package is laid out by course stage, in layers that import only downward:
core (01-04) and data at the bottom; inference (05) and compression (07); training (06); methods (08-10);
and on top the teaching face that only notebooks use: teaching, plots, widgets, exercises.
"""

from . import compression, core, data, inference, methods, plots, teaching, training
from .core.granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken
from .core.primitives import QParams, choose_qparams, dequantize, fake_quantize, qrange, quantize
from .inference.linear import QuantLinear
from .inference.quantize_model import QuantizeReport, model_size_bytes, quantize_model
from .inference.registry import QuantMethod, register_method
from .inference.serialize import load_quantized, save_quantized
from .training.calibrate import calibrate_activations

__version__ = "0.1.0"

__all__ = [
    "Granularity", "PerTensor", "PerChannel", "PerGroup", "PerToken",
    "QParams", "choose_qparams", "quantize", "dequantize", "fake_quantize", "qrange",
    "QuantLinear", "quantize_model", "model_size_bytes", "QuantizeReport", "QuantMethod", "register_method",
    "save_quantized", "load_quantized", "calibrate_activations",
    "core", "data", "inference", "training", "compression", "methods", "teaching", "plots",
]
