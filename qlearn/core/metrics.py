"""How far a reconstruction x_hat is from the original x (four numbers, Python floats), and a causal LM's perplexity."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .validation import check_bool, check_float_tensor, check_module, check_positive_int, check_same_shape

__all__ = ["cosine_similarity", "kl_divergence", "max_abs_error", "mse", "perplexity", "sqnr_db", "top1_agreement"]


def _pair(x, x_hat):
    check_float_tensor(x, "x")
    check_float_tensor(x_hat, "x_hat")
    check_same_shape(x, x_hat, ("x", "x_hat"))
    return x.detach().double(), x_hat.detach().to(x.device).double()


def _finite(value: float, what: str) -> float:
    """Raise rather than return inf: an error of finite inputs that float64 cannot hold."""
    if not math.isfinite(value):
        raise ValueError(f"{what} overflows float64 (values beyond ~1e154 square past float64's range); "
                         "rescale both tensors first")
    return value


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error: mean((x - x_hat)^2). Shapes: x, x_hat (...) -> float."""
    x, x_hat = _pair(x, x_hat)
    return _finite(float((x - x_hat).square().mean()), "the mean squared error")


def max_abs_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Largest absolute error: max |x - x_hat|. Shapes: x, x_hat (...) -> float."""
    x, x_hat = _pair(x, x_hat)
    return float((x - x_hat).abs().max())


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum x^2 / sum (x - x_hat)^2).

    Higher is better; each extra bit adds about 6 dB. An exact reconstruction gives
    +inf; an all-zero signal with non-zero error gives -inf.
    Shapes: x, x_hat (...) -> float.
    """
    x, x_hat = _pair(x, x_hat)
    error = x - x_hat
    top_x, top_e = float(x.abs().max()), float(error.abs().max())
    if top_e == 0.0:
        return math.inf
    if top_x == 0.0:
        return -math.inf
    # each sum scaled by its largest term first, so neither overflows nor underflows for any finite input
    signal, noise = float((x / top_x).square().sum()), float((error / top_e).square().sum())
    return 20.0 * (math.log10(top_x) - math.log10(top_e)) + 10.0 * math.log10(signal / noise)


def cosine_similarity(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Cosine of the angle between x and x_hat, both flattened: <x, x_hat> / (|x| |x_hat|).

    Shapes: x, x_hat (...) -> float in [-1, 1]. Raises ValueError if either is all zeros.
    """
    x, x_hat = _pair(x, x_hat)
    nx, ny = float(x.norm()), float(x_hat.norm())
    if nx == 0.0 or ny == 0.0:
        raise ValueError("cosine similarity is undefined for an all-zero tensor")
    return float((x.flatten() @ x_hat.flatten()) / (nx * ny))


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer, text: str, window: int = 512, stride: int | None = None,
               progress: bool = True) -> float:
    """Perplexity of a causal LM on `text`, as LLM quantization papers report it: exp(mean token NLL).

        PPL = exp( -1/N * sum_t log p(x_t | x_<t) )      over every predicted token t, N of them

    The token ids are cut into windows of `window` tokens that start every `stride` tokens
    (stride=None: stride = window, non-overlapping windows). Each window scores only the tokens
    that no earlier window scored; with stride < window they see the overlap as extra context
    (the sliding window of Hugging Face's perplexity guide). The first token of the text, and of
    each non-overlapping window, has no context and is not scored.

    Shapes: text -> ids (1, n) -> per window logits (1, w, vocab) -> float.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a causal LM), got {type(model).__name__}")
    if not callable(getattr(model, "get_input_embeddings", None)):
        raise TypeError(f"model must be a causal language model (a Hugging Face model with get_input_embeddings(), "
                        f"such as load_llm()'s), got {type(model).__name__}")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int >= 2 (a context and a token to predict), got {window!r}")
    stride = window if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= window:
        raise ValueError(f"stride must be None or an int from 1 to window={window}, got {stride!r}")
    check_bool(progress, "progress")
    ids = tokenizer(text, return_tensors="pt")["input_ids"]  # (1, n)
    n = ids.shape[1]
    if n < 2:
        raise ValueError(f"text has {n} token; perplexity needs at least 2")
    ids = ids.to(next(model.parameters()).device)

    nll, count, scored = 0.0, 0, 1  # tokens [0, scored) are done; token 0 has no context
    starts = range(0, max(n - window, 0) + stride, stride)  # the last window is the first to reach token n - 1
    for begin in tqdm(starts, desc="perplexity", disable=not progress):
        end = min(begin + window, n)
        first = max(scored, begin + 1)  # the first token this window scores
        if first < end:
            logits = model(ids[:, begin:end]).logits[0].float()  # (w, vocab)
            logp = torch.log_softmax(logits[first - 1 - begin:end - 1 - begin], dim=-1)  # (end - first, vocab)
            target = ids[0, first:end]  # (end - first,)
            nll -= float(logp.gather(-1, target[:, None]).double().sum())
            count += end - first
            scored = end
    if not math.isfinite(nll):
        raise ValueError("the model produced NaN or inf log-probabilities; its weights or activations overflowed")
    return math.exp(nll / count) if nll / count < 700 else math.inf


def _next_token_logprobs(reference: torch.nn.Module, model: torch.nn.Module, tokenizer, text: str, window: int,
                         progress: bool):
    """Yield (log p_ref, log p_model), float64 (w, vocab), for each window of `window` tokens of `text`."""
    vocab = {}
    for name, m in (("reference", reference), ("model", model)):
        check_module(m, name)
        if not callable(getattr(m, "get_input_embeddings", None)):
            raise TypeError(f"{name} must be a causal language model (a Hugging Face model with "
                            f"get_input_embeddings(), such as load_llm()'s), got {type(m).__name__}")
        vocab[name] = m.get_input_embeddings().num_embeddings
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    check_positive_int(window, "window (tokens per forward pass)")
    check_bool(progress, "progress")
    ids = tokenizer(text, return_tensors="pt")["input_ids"]  # (1, n)
    if ids.numel() == 0 or int(ids.max()) >= min(vocab.values()):
        raise ValueError(f"the tokenizer gave {ids.numel()} token ids up to {int(ids.max()) if ids.numel() else None}: "
                         f"both models need at least one id below their vocabularies {vocab}")
    with torch.no_grad():
        for begin in tqdm(range(0, ids.shape[1], window), desc="kl", disable=not progress):
            chunk = ids[:, begin:begin + window]  # (1, w)
            logp = [torch.log_softmax(m(chunk.to(next(m.parameters()).device)).logits[0].double().cpu(), dim=-1)
                    for m in (reference, model)]  # 2 x (w, vocab)
            if not all(bool(torch.isfinite(lp).all()) for lp in logp):
                raise ValueError("a model produced NaN or inf log-probabilities; its weights or activations overflowed")
            if logp[0].shape != logp[1].shape:
                raise ValueError(f"the models' next-token distributions differ in size ({logp[0].shape[-1]} and "
                                 f"{logp[1].shape[-1]} tokens): compare models that share a tokenizer")
            yield logp[0], logp[1]


def kl_divergence(reference: torch.nn.Module, model: torch.nn.Module, tokenizer, text: str, window: int = 512,
                  progress: bool = True) -> float:
    """Mean per-token KL(p_ref || p_model) of the next-token distributions, in nats (0 for identical models).

        KL_t = sum_v p_ref(v | x_<=t) * (log p_ref(v | x_<=t) - log p_model(v | x_<=t))
        KL   = 1/N * sum_t KL_t        over every position t of every window, N of them

    The token ids are cut into non-overlapping windows of `window` tokens; both models see the same windows.
    Log-softmax and the sum run in float64. Perplexity averages only the log-probability of the true token;
    KL compares the whole distribution, so it also sees damage that leaves the true token's probability alone.

    Shapes: text -> ids (1, n) -> per window log-probs (w, vocab) twice -> float.
    """
    total, count = 0.0, 0
    for logp_ref, logp_model in _next_token_logprobs(reference, model, tokenizer, text, window, progress):
        total += float((logp_ref.exp() * (logp_ref - logp_model)).sum())
        count += logp_ref.shape[0]
    return total / count


def top1_agreement(reference: torch.nn.Module, model: torch.nn.Module, tokenizer, text: str, window: int = 512,
                   progress: bool = True) -> float:
    """Share of positions where both models rank the same next token first: mean_t [argmax p_ref == argmax p_model].

    Same windows and positions as `kl_divergence`. Shapes: text -> float in [0, 1].
    """
    same, count = 0, 0
    for logp_ref, logp_model in _next_token_logprobs(reference, model, tokenizer, text, window, progress):
        same += int((logp_ref.argmax(-1) == logp_model.argmax(-1)).sum())
        count += logp_ref.shape[0]
    return same / count
