"""The LLM quantization methods of notebooks 08-10, one file per paper, each read top to bottom.

Every file holds the paper and its objective (module docstring), the tensor-level algorithm, its layer, and its
model-level hook, which registers itself with `quantize_model` at the end of the file. Weight methods share one
entry point and return an object with `.dequantize()`, `.nbytes` and `.bits_per_weight`, so a notebook can line
them up in one loop:

    qw = qlearn.methods.gptq.quantize_weight(W, X, bits=4, group_size=128)  # W (out, in); X (tokens, in) or None
    W_hat = qw.dequantize()                                                 # (out, in), W's dtype

    module      paper                                    quantize_model(method=...)   layer
    rtn         round to nearest, min-max per group      "rtn" (inference.registry)   QuantLinear
    nf4         QLoRA's 4-bit NormalFloat                "nf4"                        NF4Linear
    hqq         Half-Quadratic Quantization              "hqq"                        HQQLinear
    gptq        GPTQ (and its reference's mse grid)      "gptq"                       QuantLinear
    awq         AWQ                                      "awq"                        QuantLinear / AWQLinear
    llm_int8    LLM.int8()                               "llm_int8"                   Int8MixedLinear
    smoothquant SmoothQuant (smooth_model, then rtn with activations=8)
    w8a8_sim    simulated W8A8 / W8A6 / W4A4 / MX (fake quantization, notebooks 09 and 11)
    lora        LoRA adapters and their training loop (QLoRA over NF4Linear, notebook 10)
    wanda       Wanda: prune by |W| * ||X_j|| per output row, no update (pruning an LLM, notebook 13)
    sparsegpt   SparseGPT: GPTQ's OBS loop with zeros, block-wise masks, optional joint quantization
    pruning     prune_model: magnitude, Wanda or SparseGPT on a whole LLM, block by block (notebook 13)
    distill_llm token-level distillation of a pruned LLM from the dense one (forward KL at T), masks held or LoRA
    ggml_quants GGUF's block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K), llama.cpp's k-quant search and
                importance matrix (notebook 14); ggml_kquants holds the k-quant super-blocks and searches
    gguf_export write a Llama model (float, or a quantize_model grid) as a GGUF file
    llama_cpp   llama.cpp through llama-cpp-python (optional build): perplexity, KL, tokens/s, llama-quantize
    mixed_precision  bits per decoder block or Linear under a byte budget: sensitivity (KL), exact allocation
    fp8         the OCP FP8 formats (E4M3, E5M2) with per-tensor, per-row or 128x128-block float32 scales  "fp8"
    mx          the OCP Microscaling formats (MXFP8, MXFP6, MXFP4) and NVIDIA's NVFP4, emulated  "mx" (notebook 11)
    rotation    Walsh-Hadamard rotations of the residual stream (QuaRot), `rotate_model`
    hadamard_mx a Hadamard per block of the input before MXFP4 / NVFP4 weights                       "hadamard_mx"
    kv_cache    KIVI's quantized KV cache on transformers' Cache API: int8/4/2 and FP8 keys and values (notebook 12)
    finetune_memory  the bytes of full, LoRA and QLoRA fine-tuning

Shared pieces, one home each: `weight` (the quantized-weight container, and a QuantLinear built from it) and
`folding` (where AWQ's and SmoothQuant's per-channel factors fold, folding them, and the "output unchanged" check).
Importing this package (`import qlearn` does) registers every method and its layer type with `serialize`.

This layer sits on top: it may import core, inference, training and data, never the teaching face (plots,
widgets, exercises).
"""

from . import (
               awq,
               distill_llm,
               finetune_memory,
               folding,
               fp8,
               ggml_quants,
               gguf_export,
               gptq,
               hadamard_mx,
               hqq,
               kv_cache,
               llm_int8,
               lora,
               mx,
               nf4,
               pruning,
               rotation,
               rtn,
               smoothquant,
               sparsegpt,
               w8a8_sim,
               wanda,
               weight,
)

__all__ = ["awq", "distill_llm", "finetune_memory", "folding", "fp8", "ggml_quants", "gguf_export", "gptq",
           "hadamard_mx", "hqq", "kv_cache", "llm_int8", "lora", "mx", "nf4", "pruning", "rotation", "rtn",
           "smoothquant", "sparsegpt", "w8a8_sim", "wanda", "weight"]
