"""Notebooks 01-04: number formats and the quantization arithmetic everything else is built on.

    dtypes       float formats: range, precision, bit layout, model memory, casting
    granularity  PerTensor, PerChannel, PerGroup, PerToken: one reshape-then-reduce path for all
    primitives   QParams, choose_qparams, quantize, dequantize, fake_quantize (r = scale * (q - zero_point))
    metrics      mse, max_abs_error, sqnr_db, cosine_similarity; an LM's perplexity, KL and top-1 agreement
    lm_compare   LMReference: score many quantized copies of an LM against it, one pass each
    bits         effective bits per weight: codes + scales + zero points
    validation   the input checks every public function uses

The bottom layer: it imports nothing else from qlearn.
"""

from . import bits, dtypes, granularity, lm_compare, memory, metrics, modules, primitives, quiet, validation

__all__ = ["bits", "dtypes", "granularity", "lm_compare", "memory", "metrics", "modules", "primitives", "quiet",
           "validation"]
