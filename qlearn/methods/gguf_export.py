"""Write a Llama-architecture model into a GGUF file that llama.cpp and transformers both read.

Spec: the GGUF file format (ggml's docs/gguf.md) as gguf-py's GGUFWriter writes it, and llama.cpp's
`convert_hf_to_gguf.py` for what goes in it: the `llama.*` hyperparameters, tensors renamed by
`gguf.get_tensor_name_map`, q_proj and k_proj rows re-permuted into llama.cpp's rotary layout
(the converter's `LlamaModel.permute`: within each head, the two rotary halves are interleaved back),
1-D tensors (the RMSNorm weights) in F32, every 2-D weight in the file type (its bytes from
`ggml_quants.quantize_blocks`). A tied `lm_head` is not written (llama.cpp reuses token_embd).
The 4-bit file types keep token_embd in Q8_0, as llama-quantize does for a tied embedding whose
rows (576 for SmolLM2) cannot hold its k-quant.

Simplified: the tokenizer is not converted from scratch. Its `tokenizer.*` metadata (BPE tokens, token
types, merges, special ids, chat template) and the descriptive `general.*` keys (name, license) are copied
from a source GGUF file, by default the course's bundled SmolLM2 file, after checking that the tokenizer's
vocabulary is the same token for token. Exporting load_llm()'s SmolLM2 with type="Q4_1" writes every
one of its 272 tensors byte for byte as the bundled file holds them (its weights were Q4_1 already).
Only the float path: a model quantized by `quantize_model` is not mapped onto GGUF types here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.validation import check_choice, check_module
from .ggml_quants import quantize_blocks

__all__ = ["FILE_TYPES", "export_gguf", "permute_for_gguf"]

FILE_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")


def permute_for_gguf(W: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder the rows of a q_proj or k_proj weight from Hugging Face's rotary layout to llama.cpp's.

    Hugging Face rotates the pair (i, i + d/2) of each head of size d; llama.cpp the pair (2i, 2i + 1):
    rows (head, half, i) -> (head, i, half).
    Shapes: W (n_head * d, in) -> (n_head * d, in), the same rows reordered.
    """
    out, rest = W.shape[0], W.shape[1:]
    grouped = W.reshape(n_head, 2, out // n_head // 2, *rest)  # (head, half, d / 2, in)
    return grouped.transpose(1, 2).reshape(W.shape)  # (head, d / 2, half, in) -> (out, in)


def _source_fields(source: Path, tokenizer) -> list:
    """The tokenizer.* and descriptive general.* fields of `source`, once `tokenizer` has its tokens in order."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    own = ("general.architecture", "general.file_type", "general.quantization_version")  # written for this file
    fields = [f for name, f in reader.fields.items() if name.startswith(("tokenizer.", "general.")) and name not in own]
    if tokenizer is not None:
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        mine = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        if mine != tokens:
            raise ValueError(f"the tokenizer's vocabulary ({len(mine)} tokens) is not the one in {source.name} "
                             f"({len(tokens)} tokens); pass metadata_from= a GGUF file of this tokenizer")
    return fields


def _rope_theta(config) -> float:
    theta = getattr(config, "rope_theta", None)
    return float(theta if theta is not None else config.rope_parameters["rope_theta"])


def export_gguf(model: nn.Module, tokenizer, path, type: str = "Q8_0", metadata_from=None) -> Path:
    """Write a LlamaForCausalLM (float weights) to `path` as GGUF with its linear weights in `type`.

    file = header | llama.* and tokenizer.* key-values | tensor infos | tensor data (aligned to 32 bytes)
    type: "F32", "F16", "Q8_0", "Q4_0" or "Q4_1"; tokenizer: checked against the copied metadata (None: not
    checked); metadata_from: the GGUF file whose tokenizer.* and general.* metadata is copied (None: the
    bundled SmolLM2).
    Shapes: every 2-D weight (out, in) with in a multiple of 32 for the block types.
    """
    import gguf

    from ..data.llm import smollm2_gguf

    check_module(model)
    check_choice(type, "type", FILE_TYPES)
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"export_gguf writes the Llama architecture (a transformers LlamaForCausalLM); got "
                         f"model_type {getattr(config, 'model_type', None)!r}")
    source = Path(metadata_from) if metadata_from is not None else smollm2_gguf()
    fields = _source_fields(source, tokenizer)
    path = Path(path)
    n_layer, n_head = config.num_hidden_layers, config.num_attention_heads
    n_kv = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layer)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type({"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7}[type])
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    for f in fields:
        value = f.contents()
        writer.add_key_value(f.name, value, f.types[0], f.types[-1] if len(f.types) > 1 else None)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name!r}: export_gguf knows the Llama tensors only")
        W = tensor.detach().float().cpu()
        if hf_name.endswith("q_proj.weight"):
            W = permute_for_gguf(W, n_head)
        elif hf_name.endswith("k_proj.weight"):
            W = permute_for_gguf(W, n_kv)
        tensor_type = "F32" if W.ndim == 1 else "Q8_0" if name == "token_embd.weight" and type in ("Q4_0", "Q4_1") \
            else type
        if tensor_type == "F32":
            writer.add_tensor(name, W.numpy())
        elif tensor_type == "F16":
            writer.add_tensor(name, W.half().numpy())
        else:
            data = quantize_blocks(W, tensor_type).numpy()  # (out, in / 32 * bytes) uint8
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType[tensor_type])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
