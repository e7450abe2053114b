"""The memory budget of fine-tuning, byte by byte (QLoRA, Dettmers et al., 2023, section 2 and 3).

    bytes = n_base * base_bytes  +  n_trained * (weight + gradient + 2 Adam moments)

    full fp32:   every parameter trains:       4 + 4 + 4 + 4 = 16 bytes per parameter
    full 16-bit: bf16 weights and gradients, fp32 Adam moments: 2 + 2 + 4 + 4 = 12 bytes per parameter
    LoRA:        frozen fp16 base (2 bytes) + fp32 adapters that train (16 bytes each)
    QLoRA:       frozen NF4 base: 4 bits + its absmax constants + fp32 adapters (16 bytes each)

NF4 stores one float32 absmax per block of 64 weights: 32 / 64 = 0.5 bits per weight. Double
quantization stores it in 8 bits plus one float32 per 256 absmax values: 8/64 + 32/(64*256) = 0.127 bits.
Simplified: activations (which grow with batch and sequence length), the embedding's own storage
format and framework overhead are left out; the paper's figures include activations.
"""

from __future__ import annotations

from ..core.validation import check_bool, check_positive_int

__all__ = ["ADAPTER_BYTES", "RECIPES", "decoder_linear_shapes", "finetune_bytes", "lora_params", "nf4_bits_per_weight"]

RECIPES = ("full fp32", "full 16-bit", "LoRA (fp16 base)", "QLoRA (NF4 + DQ base)")
ADAPTER_BYTES = 4 + 4 + 4 + 4  # fp32 adapter weight, its gradient, Adam's two moments


def nf4_bits_per_weight(block_size: int = 64, double_quant: bool = True, block_size2: int = 256) -> float:
    """4 bits per code plus the absmax constants: 32 / block (float32) or 8 / block + 32 / (block * block2) (DQ)."""
    check_positive_int(block_size, "block_size")
    check_positive_int(block_size2, "block_size2")
    check_bool(double_quant, "double_quant")
    constants = 8 / block_size + 32 / (block_size * block_size2) if double_quant else 32 / block_size
    return 4 + constants


def decoder_linear_shapes(hidden: int, intermediate: int, layers: int, kv_dim: int | None = None) -> list[tuple]:
    """(out, in) of every Linear in a Llama-style decoder: q, k, v, o, gate, up, down per layer.

    kv_dim=None means as many key/value heads as query heads (kv_dim = hidden).
    """
    for value, name in ((hidden, "hidden"), (intermediate, "intermediate"), (layers, "layers")):
        check_positive_int(value, name)
    kv = hidden if kv_dim is None else check_positive_int(kv_dim, "kv_dim")
    per_layer = [(hidden, hidden), (kv, hidden), (kv, hidden), (hidden, hidden),
                 (intermediate, hidden), (intermediate, hidden), (hidden, intermediate)]
    return per_layer * layers


def lora_params(shapes, r: int) -> int:
    """Parameters of rank-r adapters on layers of these (out, in) shapes: sum of r * (in + out)."""
    check_positive_int(r, "r")
    shapes = list(shapes)
    if not shapes or not all(len(s) == 2 for s in shapes):
        raise ValueError(f"shapes must be a non-empty list of (out, in) pairs, got {shapes[:3]!r}")
    return sum(r * (check_positive_int(o, "out") + check_positive_int(i, "in")) for o, i in shapes)


def finetune_bytes(n_params: int, n_quantized: int, n_adapter: int, recipe: str) -> dict[str, float]:
    """Bytes of weights, gradients and optimizer state for one recipe (see the module docstring).

    n_params: every parameter of the model; n_quantized: those in the Linear layers that QLoRA stores
    in NF4 (the rest, embeddings and norms, stay 16-bit); n_adapter: the LoRA parameters.
    Returns {"base", "adapters", "gradients", "optimizer", "total"}.
    """
    check_positive_int(n_params, "n_params")
    check_positive_int(n_adapter, "n_adapter")
    if isinstance(n_quantized, bool) or not isinstance(n_quantized, int) or not 0 <= n_quantized <= n_params:
        raise ValueError(f"n_quantized must be an int from 0 to n_params={n_params}, got {n_quantized!r}")
    if recipe == "full fp32":
        parts = {"base": 4 * n_params, "adapters": 0, "gradients": 4 * n_params, "optimizer": 8 * n_params}
    elif recipe == "full 16-bit":
        parts = {"base": 2 * n_params, "adapters": 0, "gradients": 2 * n_params, "optimizer": 8 * n_params}
    elif recipe in RECIPES[2:]:
        base = 2 * n_params if recipe == RECIPES[2] else \
            n_quantized * nf4_bits_per_weight() / 8 + 2 * (n_params - n_quantized)
        parts = {"base": base, "adapters": 4 * n_adapter, "gradients": 4 * n_adapter, "optimizer": 8 * n_adapter}
    else:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    parts["total"] = sum(parts.values())
    return parts
