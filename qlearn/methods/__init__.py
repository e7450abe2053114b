"""The LLM quantization methods of notebooks 08-10, one module per paper.

Weight methods (notebook 08) share one entry point and return an object with `.dequantize()`
and `.nbytes`, so a notebook can line them up in one loop:

    qw = qlearn.methods.gptq.quantize_weight(W, X, bits=4, group_size=128)  # W (out, in); X (tokens, in) or None
    W_hat = qw.dequantize()                                                 # (out, in), W's dtype

    rtn    round to nearest, min-max per group: the baseline the others build on
    nf4    QLoRA's 4-bit NormalFloat with block absmax, optional double quantization
    hqq    Half-Quadratic Quantization: a data-free lp-loss solver for the zero point
    gptq   GPTQ: column-by-column rounding with second-order error feedback (Algorithm 1)
    awq    AWQ: activation-aware per-channel scales searched on calibration data

Activation methods (notebook 09): llm_int8 (mixed-precision decomposition of outlier columns)
and smoothquant (migrating activation range into the weights). Fine-tuning (notebook 10): lora.

Model level (`qlearn.quantize_model(model, method=...)`): `registry` registers gptq, awq, hqq, nf4 and
llm_int8 with the entry point; their layers are hqq_linear.HQQLinear, awq_linear.AWQLinear,
nf4_linear.NF4Linear and llm_int8_linear.Int8MixedLinear; awq_model finds and folds AWQ's scales.

This layer sits on top: it may import core, inference, training and data, never the teaching
face (plots, widgets, exercises).
"""

from . import (awq, awq_linear, awq_model, finetune_memory, gptq, hqq, hqq_linear, llm_int8, llm_int8_linear, lora,
               lora_train, nf4, nf4_linear, registry, rtn, smoothquant, smoothquant_pairs, w8a8_sim, weight)
