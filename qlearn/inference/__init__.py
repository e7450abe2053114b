"""Notebook 05: integer layers and running a quantized model.

    packing         sub-byte codes, two int4 or four int2 per byte
    linear          QuantLinear: int8, packed int4 / int2 weights; the reference path
    kernels         the fused CPU / CUDA fast paths QuantLinear dispatches to, and when each applies
    quantize_model  swap a model's Linear layers for QuantLinear; model_size_bytes
    serialize       save / load a quantized model with safetensors into a meta skeleton

Imports core and data only.
"""

from . import kernels, linear, packing, quantize_model, serialize
