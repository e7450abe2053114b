"""Score many quantized copies of one causal LM against its float reference: one forward pass per copy.

    reference = LMReference(model, tokenizer, text, window=256)   # the reference's log-probs, computed once
    reference.score(quantized)    # {"perplexity": ..., "kl": ..., "top1": ...}

The three numbers are those of `metrics.perplexity(quantized, ..., window)` (non-overlapping windows),
`metrics.kl_divergence(model, quantized, ..., window)` and `metrics.top1_agreement(...)`, from one pass of the
quantized model instead of three passes of both models:

    perplexity = exp(-1/N sum_t log q(x_t | x_<t))           t = 1 .. w-1 of each window (N of them)
    kl         = 1/M sum_t sum_v p(v | x_<=t) (log p(v | x_<=t) - log q(v | x_<=t))     every position t (M)
    top1       = 1/M sum_t [argmax_v p(v | x_<=t) == argmax_v q(v | x_<=t)]
"""

from __future__ import annotations

import math

import torch

from .metrics import _next_token_logprobs
from .validation import check_module

__all__ = ["LMReference"]


class LMReference:
    """The next-token log-probabilities of a reference LM on `text`, cut into windows of `window` tokens.

    Shapes: text -> ids (1, n) -> per window log-probs (w, vocab) float64, kept (n * vocab * 8 bytes).
    """

    def __init__(self, reference: torch.nn.Module, tokenizer, text: str, window: int = 256):
        pairs = list(_next_token_logprobs(reference, reference, tokenizer, text, window, False))
        self.logp = [logp for logp, _ in pairs]  # the reference once; _next_token_logprobs checked every argument
        self.tokenizer, self.text, self.window = tokenizer, text, window
        self.ids = tokenizer(text, return_tensors="pt")["input_ids"]  # (1, n)
        if self.ids.shape[1] < 2:
            raise ValueError(f"text has {self.ids.shape[1]} token; scoring needs at least 2")
        self.vocab = self.logp[0].shape[-1]

    def score(self, model: torch.nn.Module) -> dict[str, float]:
        """perplexity, kl (nats) and top1 of `model` against the reference (formulas in the module docstring)."""
        check_module(model)
        nll, scored, kl, same, count = 0.0, 0, 0.0, 0, 0
        device = next(model.parameters()).device
        with torch.no_grad():
            for i, logp_ref in enumerate(self.logp):
                chunk = self.ids[:, i * self.window:(i + 1) * self.window]  # (1, w)
                logp = torch.log_softmax(model(chunk.to(device)).logits[0].double().cpu(), dim=-1)  # (w, vocab)
                if logp.shape != logp_ref.shape or not bool(torch.isfinite(logp).all()):
                    raise ValueError(f"the model gave log-probs of shape {tuple(logp.shape)} (finite: "
                                     f"{bool(torch.isfinite(logp).all())}); the reference's are "
                                     f"{tuple(logp_ref.shape)}: compare finite models with one tokenizer")
                nll -= float(logp[:-1].gather(-1, chunk[0, 1:, None]).sum())
                scored += chunk.shape[1] - 1
                kl += float((logp_ref.exp() * (logp_ref - logp)).sum())
                same += int((logp_ref.argmax(-1) == logp.argmax(-1)).sum())
                count += chunk.shape[1]
        if scored == 0:
            raise ValueError("every window holds one token: nothing to predict; use a larger window")
        return {"perplexity": math.exp(nll / scored) if nll / scored < 700 else math.inf, "kl": kl / count,
                "top1": same / count}
