"""llama.cpp from Python (llama-cpp-python): score, time and quantize GGUF files in the engine people run.

Spec: llama.cpp's `llama.h` as llama-cpp-python binds it (`Llama` for inference, `llama_model_quantize` with
`llama_model_quantize_params` for llama-quantize's file types, `llama_log_set` for its logging). The scores
are the course's own, computed from llama.cpp's logits on the token ids of the same Hugging Face tokenizer,
in the same windows as `qlearn.core.metrics`, so a number here and one there compare like for like:

    perplexity = exp( -1/N * sum_t log p(x_t | x_<t) )    non-overlapping windows, first token of each unscored
    KL         = 1/N * sum_t KL(p_ref(. | x_<=t) || p_gguf(. | x_<=t))    every position of every window

Simplified: one sequence at a time (no batching of windows), greedy decoding for tokens per second, and
only non-overlapping windows (metrics.perplexity's default stride). llama-cpp-python is optional: it builds
from source (`make llama-cpp`); every function here raises ModuleNotFoundError saying so when it is missing.
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..core.validation import check_bool, check_choice, check_module, check_positive_int

__all__ = ["FTYPES", "INSTALL_HINT", "available", "chat", "kl_divergence", "load", "perplexity", "quantize_gguf",
           "tokens_per_second"]

INSTALL_HINT = ("llama-cpp-python is not installed: build it once with `make llama-cpp` "
                "(a source build: about 5 min on 2 quiet cores)")
FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11,
          "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18}  # llama_ftype
_QUIET = []  # keeps the no-op log callback alive (ctypes would free it, and llama.cpp would call freed memory)


def available() -> bool:
    """True when llama-cpp-python can be imported (a build of `make llama-cpp`)."""
    return importlib.util.find_spec("llama_cpp") is not None


def _llama_cpp():
    """The llama_cpp module with llama.cpp's own logging silenced (it writes to stderr by default)."""
    if not available():
        raise ModuleNotFoundError(INSTALL_HINT)
    import llama_cpp

    if not _QUIET:
        _QUIET.append(llama_cpp.llama_log_callback(lambda level, text, user_data: None))
        llama_cpp.llama_log_set(_QUIET[0], ctypes.c_void_p(0))
    return llama_cpp


def _gguf_path(path) -> Path:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or pathlib.Path of a GGUF file, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    return path


def load(path, n_ctx: int = 512, n_threads: int = 2, logits_all: bool = True):
    """A llama_cpp.Llama on the GGUF file at `path`, quiet, CPU only (logits_all: keep every position's logits)."""
    path = _gguf_path(path)
    check_positive_int(n_ctx, "n_ctx")
    check_positive_int(n_threads, "n_threads")
    check_bool(logits_all, "logits_all")
    llama_cpp = _llama_cpp()
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=n_threads,
                           n_threads_batch=n_threads, logits_all=logits_all, verbose=False, seed=0)


def _ids(tokenizer, text: str) -> list[int]:
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    ids = tokenizer(text)["input_ids"]
    if len(ids) < 2:
        raise ValueError(f"text has {len(ids)} token; scoring needs at least 2")
    return list(ids)


def _window_logprobs(llm, ids: list[int], window: int):
    """Yield (begin, log-probs) for each window of `window` ids, from llama.cpp's logits.

    Shapes: ids (n,) -> per window (w, vocab) float64, row j predicting ids[begin + j + 1].
    """
    for begin in range(0, len(ids), window):
        chunk = ids[begin:begin + window]
        llm.reset()
        llm.eval(chunk)
        logits = torch.from_numpy(np.array(llm.scores[:len(chunk)], dtype=np.float64))  # (w, vocab)
        yield begin, torch.log_softmax(logits, dim=-1)


def perplexity(path, tokenizer, text: str, window: int = 512, n_threads: int = 2) -> float:
    """Perplexity of the GGUF model at `path` on `text`, as metrics.perplexity scores it (stride = window).

        PPL = exp( -1/N * sum_t log p(x_t | x_<t) ), windows [0, w), [w, 2w), ..., each window's first token unscored
    Shapes: text -> ids (n,) -> per window logits (w, vocab) -> float.
    """
    check_positive_int(window, "window")
    if window < 2:
        raise ValueError(f"window must be >= 2 (a context and a token to predict), got {window}")
    ids = _ids(tokenizer, text)
    llm = load(path, n_ctx=window, n_threads=n_threads)
    nll, count = 0.0, 0
    for begin, logp in _window_logprobs(llm, ids, window):
        target = torch.tensor(ids[begin + 1:begin + window])  # (w - 1,)
        if len(target):
            nll -= float(logp[:len(target)].gather(-1, target[:, None]).sum())
            count += len(target)
    llm.close()
    return math.exp(nll / count) if nll / count < 700 else math.inf


@torch.no_grad()
def kl_divergence(reference: torch.nn.Module, path, tokenizer, text: str, window: int = 512,
                  n_threads: int = 2) -> float:
    """Mean per-token KL(p_ref || p_gguf) in nats: a transformers model against the GGUF file in llama.cpp.

        KL = 1/N * sum_t sum_v p_ref(v | x_<=t) * (log p_ref(v | x_<=t) - log p_gguf(v | x_<=t))
    Same windows and positions as metrics.kl_divergence. Shapes: text -> per window (w, vocab) twice -> float.
    """
    check_module(reference, "reference")
    check_positive_int(window, "window")
    ids = _ids(tokenizer, text)
    llm = load(path, n_ctx=window, n_threads=n_threads)
    device = next(reference.parameters()).device
    total, count = 0.0, 0
    for begin, logp in _window_logprobs(llm, ids, window):
        chunk = torch.tensor([ids[begin:begin + window]], device=device)  # (1, w)
        logp_ref = torch.log_softmax(reference(chunk).logits[0].double().cpu(), dim=-1)  # (w, vocab)
        if logp_ref.shape != logp.shape:
            raise ValueError(f"the reference predicts {logp_ref.shape[-1]} tokens, the GGUF model {logp.shape[-1]}: "
                             "compare models that share a tokenizer")
        total += float((logp_ref.exp() * (logp_ref - logp)).sum())
        count += logp.shape[0]
    llm.close()
    return total / count


def tokens_per_second(path, prompt_ids, new_tokens: int = 32, n_threads: int = 2, rounds: int = 3) -> float:
    """Greedy decoding speed in llama.cpp: new_tokens / seconds, the best of `rounds` (after the prompt is read).

    Shapes: prompt_ids (n,) ints -> float tokens per second.
    """
    check_positive_int(new_tokens, "new_tokens")
    check_positive_int(rounds, "rounds")
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise ValueError("prompt_ids must hold at least one token id")
    llm = load(path, n_ctx=len(ids) + new_tokens + 1, n_threads=n_threads, logits_all=False)
    best = math.inf
    for _ in range(rounds):
        llm.reset()
        llm.eval(ids)  # the prompt, not timed
        start = time.perf_counter()
        token = ids[-1]
        for _ in range(new_tokens):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))  # (vocab,)
            token = int(np.argmax(logits))
            llm.eval([token])
        best = min(best, time.perf_counter() - start)
    llm.close()
    return new_tokens / best


def chat(path, prompt: str, max_tokens: int = 40, n_threads: int = 2) -> str:
    """The GGUF model's greedy reply to one user message, with the chat template stored in the file."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    check_positive_int(max_tokens, "max_tokens")
    llm = load(path, n_ctx=512, n_threads=n_threads, logits_all=False)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                     temperature=0.0, seed=0)
    llm.close()
    return out["choices"][0]["message"]["content"]


def quantize_gguf(source, target, type: str = "Q4_K_M", imatrix: dict | None = None, n_threads: int = 2) -> Path:
    """llama-quantize in Python: re-quantize an F32/F16 GGUF file to one of llama.cpp's file types.

    type: a llama_ftype name (FTYPES: "Q4_K_M", "Q6_K", "Q4_0", ...). llama.cpp picks each tensor's type
    itself: a k-quant needs rows that are a multiple of 256, so narrower tensors fall back to a legacy type.
    imatrix: GGUF tensor name ("blk.0.ffn_down.weight") -> importance (in,) (ggml_quants.importance(X)),
    which weights the block searches as `llama-quantize --imatrix` does.
    """
    source = _gguf_path(source)
    if not isinstance(target, (str, Path)):
        raise TypeError(f"target must be a str or pathlib.Path, got {target.__class__.__name__}")
    check_choice(type, "type", tuple(FTYPES))
    check_positive_int(n_threads, "n_threads")
    entries = _imatrix_entries(imatrix)
    llama_cpp = _llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread, params.ftype = n_threads, FTYPES[type]
    keep = None
    if entries:
        data = [np.ascontiguousarray(v, dtype=np.float32) for _, v in entries]
        keep = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()  # NULL-terminated array
        for slot, (name, _), values in zip(keep, entries, data):
            slot.name, slot.size = name.encode(), values.size
            slot.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        params.imatrix = ctypes.cast(keep, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    del keep
    if status != 0:
        raise RuntimeError(f"llama_model_quantize failed (status {status}) for {source.name} -> {type}")
    return Path(target)


def _imatrix_entries(imatrix) -> list:
    if imatrix is None:
        return []
    if not isinstance(imatrix, dict) or not imatrix:
        raise TypeError("imatrix must be None or a non-empty dict: GGUF tensor name -> importance (in,)")
    entries = []
    for name, values in imatrix.items():
        if not isinstance(name, str) or not isinstance(values, torch.Tensor) or values.ndim != 1:
            raise TypeError(f"imatrix entries must be str -> 1-D torch.Tensor, got {name!r}")
        v = values.detach().float().cpu()
        if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
            raise ValueError(f"imatrix[{name!r}] must be finite and >= 0 (a sum of squared inputs)")
        entries.append((name, v.numpy()))
    return entries
