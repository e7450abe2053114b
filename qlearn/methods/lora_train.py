"""A small, seeded training loop for LoRA adapters on a causal LM: AdamW on A and B only, next-token loss.

    for step in 1..steps:
        ids  <- `batch_size` windows of `seq_len` tokens of the text, at seeded random offsets
        loss <- mean cross-entropy of predicting ids[t + 1] from ids[:t + 1]
        A, B <- AdamW step (the frozen base has no gradient and no optimizer state)

Short windows and a few dozen steps keep it CPU-friendly; the full runs live in benchmarks/bench_qlora.py.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.validation import check_bool
from ._checks import check_number, check_positive_int
from .lora import lora_parameters


def token_windows(ids: torch.Tensor, seq_len: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` random windows of `seq_len` tokens from a 1-D id tensor.

    Shapes: ids (n,) -> (batch_size, seq_len).
    """
    starts = torch.randint(0, ids.numel() - seq_len + 1, (batch_size,), generator=generator)
    return torch.stack([ids[s:s + seq_len] for s in starts.tolist()])  # (batch_size, seq_len)


def train_lora(model: nn.Module, tokenizer, text: str, steps: int = 20, seq_len: int = 64, batch_size: int = 1,
               lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, progress: bool = True) -> list[float]:
    """Train the LoRA adapters of `model` on `text` for `steps` AdamW steps; return the loss of each step.

        loss = -1/T * sum_t log p(x_{t+1} | x_<=t)       per window, averaged over the batch

    The model is put in train mode during the loop (dropout of the adapters) and back in eval mode
    after. Seeded: the same seed, model and text give the same windows and, on one CPU, the same losses.

    Shapes: text -> ids (n,) -> each step a batch (batch_size, seq_len) -> one float per step.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a causal LM with LoRA adapters), got {type(model).__name__}")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    for value, name in ((steps, "steps"), (seq_len, "seq_len"), (batch_size, "batch_size")):
        check_positive_int(value, name)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (a context and a token to predict), got {seq_len}")
    check_number(lr, "lr", 0.0, low_inclusive=False)
    check_number(weight_decay, "weight_decay", 0.0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    check_bool(progress, "progress")
    params = lora_parameters(model)
    device = params[0].device
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]  # (n,)
    if ids.numel() < seq_len:
        raise ValueError(f"text has {ids.numel()} tokens, fewer than seq_len={seq_len}; use a longer text "
                         f"or a shorter seq_len")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    losses = []
    model.train()
    try:
        for _ in tqdm(range(steps), desc="LoRA", disable=not progress):
            batch = token_windows(ids, seq_len, batch_size, generator).to(device)  # (batch, seq_len)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        model.eval()
    return losses
