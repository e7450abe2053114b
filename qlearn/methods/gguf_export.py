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
A model quantized by `quantize_model` (QuantLinear layers) is written with its own codes (type=None):
each 32-block gets its group's scale and zero point as GGML's d and m, rounded to fp16 (see grid_blocks).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.primitives import qrange
from ..core.validation import check_choice, check_module, check_positive_int
from ..inference.linear import QuantLinear
from .ggml_quants import pack_blocks, quantize_blocks

__all__ = ["FILE_TYPES", "export_gguf", "grid_blocks", "permute_for_gguf"]

FILE_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")


def permute_for_gguf(W: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder the rows of a q_proj or k_proj weight from Hugging Face's rotary layout to llama.cpp's.

    Hugging Face rotates the pair (i, i + d/2) of each head of size d; llama.cpp the pair (2i, 2i + 1):
    rows (head, half, i) -> (head, i, half).
    Shapes: W (n_head * d, in) -> (n_head * d, in), the same rows reordered.
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 2:  # any dtype: float weights or integer codes are reordered
        raise TypeError(f"W must be a 2-D tensor (rows, in), got {getattr(W, 'shape', type(W).__name__)}")
    check_positive_int(n_head, "n_head")
    if W.shape[0] % (2 * n_head):
        raise ValueError(f"W's {W.shape[0]} rows must split into n_head={n_head} heads of an even size")
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


def grid_blocks(name: str, layer: QuantLinear):
    """The GGML type, codes and block scales that hold a QuantLinear's weight grid with the same codes.

    r = scale * (q - zero_point) per 32-block is d * u + m with u = q - qmin, d = scale and
    m = scale * (qmin - zero_point): asymmetric 2-4 bits -> Q4_1, 5 bits -> Q5_1; symmetric (zero_point 0)
    r = d * (u - 2^(b'-1)): 2-4 bits -> Q4_0, 5 -> Q5_0, 6-8 -> Q8_0 (u = q). Groups must span whole
    32-blocks (a group of 64 repeats its scale in both of its blocks); d and m are then rounded to fp16.
    Shapes: layer weight (out, in) -> u (out, in) int32, d and m (out, in / 32) float32 (m None if symmetric).
    """
    if layer.activations is not None or hasattr(layer, "smooth_input_scale") or layer.bias is not None:
        raise ValueError(f"{name}: a GGUF file holds the weight grid only; this layer also quantizes its "
                         "activations, carries SmoothQuant's input scale or has a bias")
    out, n = layer.out_features, layer.in_features
    if n % 32:
        raise ValueError(f"{name}: GGML blocks hold 32 weights; in_features={n} is not a multiple of 32")
    codes = layer.codes().to(torch.int32)  # (out, in)
    blocks = torch.ones_like(layer.granularity.to_blocks(codes.float()))  # (out, in / g, g) or (out, in)
    scale = (blocks * layer.scale).reshape(out, n // 32, 32)  # (out, in / 32, 32): one scale per weight
    zero = (blocks * layer.zero_point.float()).reshape(out, n // 32, 32)
    if not (torch.equal(scale, scale[..., :1].expand_as(scale)) and torch.equal(zero, zero[..., :1].expand_as(zero))):
        raise ValueError(f"{name}: its groups ({layer.granularity}) do not cover whole blocks of 32, so no GGML "
                         "block can hold one scale for each; quantize with PerGroup(32), PerGroup(64), ... or "
                         "PerChannel(0)")
    d, zero_point = scale[..., 0], zero[..., 0]  # (out, in / 32)
    qmin, bits = qrange(layer.bits)[0], layer.bits
    if layer.symmetric:
        type = "Q4_0" if bits <= 4 else "Q5_0" if bits == 5 else "Q8_0"
        return type, codes + {"Q4_0": 8, "Q5_0": 16, "Q8_0": 0}[type], d, None
    if bits > 5:
        raise ValueError(f"{name}: an asymmetric {bits}-bit grid has no GGML type (Q4_1 holds 4 bits, Q5_1 5); "
                         "use a symmetric 8-bit grid (Q8_0) or 5 bits or fewer")
    return ("Q4_1" if bits <= 4 else "Q5_1"), codes - qmin, d, d * (qmin - zero_point)


def _tensors(model: nn.Module, type: str | None) -> list:
    """(Hugging Face name, kind, payload) for every tensor the file gets, checked before anything is written.

    kind "float": payload W; kind "grid": payload (GGML type, its packed blocks (out, in / 32 * bytes) uint8),
    packed at once so the exporter holds bytes, never every layer's int32 codes (4 bytes per weight).
    """
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, QuantLinear)}
    if quantized and type is not None:
        raise ValueError(f"the model holds QuantLinear layers ({next(iter(quantized))}, ...): pass type=None to "
                         "write their own grid, or export the float model")
    owners = dict(model.named_modules())
    out = [(f"{name}.weight", "grid", _packed(name, m)) for name, m in quantized.items()]
    for hf_name, tensor in model.state_dict().items():
        prefix = hf_name.rsplit(".", 1)[0]
        if prefix in quantized:
            continue
        if not tensor.is_floating_point() or not hf_name.endswith(".weight"):
            raise ValueError(f"{hf_name}: a {_type_name(owners.get(prefix))} layer has no GGUF form here (export "
                             "takes float layers and QuantLinear grids)")
        out.append((hf_name, "float", tensor.detach().float().cpu()))
    return out


def _packed(name: str, layer: QuantLinear) -> tuple:
    """(GGML type, the layer's grid packed into its blocks): rows permute alike before or after packing."""
    tensor_type, u, d, m = grid_blocks(name, layer)
    return tensor_type, pack_blocks(u, d, m, tensor_type)  # (out, in / 32 * bytes) uint8


def _type_name(module) -> str:
    return module.__class__.__name__ if module is not None else "model"


def export_gguf(model: nn.Module, tokenizer, path, type: str | None = "Q8_0", metadata_from=None) -> Path:
    """Write a LlamaForCausalLM to `path` as GGUF: float weights in `type`, or (type=None) its QuantLinear grids.

    file = header | llama.* and tokenizer.* key-values | tensor infos | tensor data (aligned to 32 bytes)
    type: "F32", "F16", "Q8_0", "Q4_0" or "Q4_1" for a float model; None for a model quantized by
    `quantize_model` whose grids a GGML type holds (see `grid_blocks`; its float weights go in F16).
    tokenizer: checked against the copied metadata (None: not checked); metadata_from: the GGUF file whose
    tokenizer.* and general.* metadata is copied (None: the bundled SmolLM2).
    Shapes: every 2-D weight (out, in) with in a multiple of 32 for the block types.
    """
    import gguf

    from ..data.llm import smollm2_gguf

    check_module(model)
    check_choice(type, "type", FILE_TYPES + (None,))
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        raise ValueError(f"export_gguf writes the Llama architecture (a transformers LlamaForCausalLM); got "
                         f"model_type {getattr(config, 'model_type', None)!r}")
    tensors = _tensors(model, type)
    source = Path(metadata_from) if metadata_from is not None else smollm2_gguf()
    fields = _source_fields(source, tokenizer)
    path = Path(path)
    n_layer, n_head = config.num_hidden_layers, config.num_attention_heads
    n_kv = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    grid_types = [payload[0] for _, kind, payload in tensors if kind == "grid"]
    file_type = type or (max(set(grid_types), key=grid_types.count) if grid_types else "F16")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layer)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type({"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9}[file_type])
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    for f in fields:
        writer.add_key_value(f.name, f.contents(), f.types[0], f.types[-1] if len(f.types) > 1 else None)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, kind, payload in tensors:
        if tied and hf_name == "lm_head.weight":
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name!r}: export_gguf knows the Llama tensors only")
        heads = n_head if hf_name.endswith("q_proj.weight") else n_kv if hf_name.endswith("k_proj.weight") else None
        rows = (lambda t: t) if heads is None else (lambda t: permute_for_gguf(t, heads))  # noqa: E731
        if kind == "grid":
            tensor_type, packed = payload
            data = rows(packed).numpy()  # (out, in / 32 * bytes) uint8, a block's bytes stay within its row
        else:
            W = rows(payload)
            tensor_type = "F32" if W.ndim == 1 else "Q8_0" if name == "token_embd.weight" and type in ("Q4_0", "Q4_1") \
                else type or "F16"
            if tensor_type in ("F32", "F16"):
                writer.add_tensor(name, W.numpy() if tensor_type == "F32" else W.half().numpy())
                continue
            data = quantize_blocks(W, tensor_type).numpy()  # (out, in / 32 * bytes) uint8
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType[tensor_type])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
