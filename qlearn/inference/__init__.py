"""Notebook 05: integer layers and running a quantized model.

    packing         sub-byte codes, two int4 or four int2 per byte
    linear          QuantLinear: int8, packed int4 / int2 weights; the reference path
    kernels         the fused CPU / CUDA fast paths QuantLinear dispatches to, and when each applies
    capture         run calibration batches, capture the inputs of chosen layers with forward hooks
    registry        the methods quantize_model runs (QuantMethod, register_method); rtn lives here
    targets         which Linear layers quantize_model replaces, and their blocks
    quantize_model  swap a model's Linear layers for a method's quantized layers; model_size_bytes
    serialize       save / load a quantized model with safetensors into a meta skeleton

Imports core and data only.
"""

from . import capture, kernels, linear, packing, quantize_model, registry, serialize, targets

__all__ = ["capture", "kernels", "linear", "packing", "quantize_model", "registry", "serialize", "targets"]
