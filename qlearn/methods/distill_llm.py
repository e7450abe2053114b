"""Token-level distillation of a causal LM from a teacher's logits: how a pruned (or quantized) LLM recovers.

Hinton, Vinyals and Dean (2015) (compression/distill.py, notebook 07) at every position of a text: the dense
teacher gives a distribution over the next token at each position, the pruned student learns to match it
(the forward KL, KL(teacher || student), as Sanh et al.'s DistilBERT and the word-level KD of Kim and Rush 2016):

    p_t = softmax(z_teacher[t] / T),   q_t = softmax(z_student[t] / T)          (t: every position of a window)
    L = alpha * T^2 * mean_t KL(p_t || q_t) + (1 - alpha) * mean_t CE(z_student[t], x[t + 1])

alpha = 1 (the default) is pure distillation; below 1 the next-token loss of the text joins in. The soft targets
say much more per token than the one next token (the teacher's whole ranking of 49,152 tokens), so a few dozen
steps move a pruned model a long way back.

What trains (`train`):
    "masked"  the weights of the pruned Linear layers named in `masks` (a PruneReport's masks), with the mask held:
              each gradient is multiplied by the mask before AdamW sees it, so a pruned weight's moments stay 0 and
              its update is 0 (it is zeroed again after each step all the same). Everything else is frozen.
    "lora"    the LoRA adapters the student already has (qlearn.methods.lora.add_lora); the sparse weights stay
              as they are. Merging the adapters (merge_lora) would fill the zeros: keep them apart, or re-prune.

Simplified: random windows of one text (lora.token_windows, seeded), AdamW at a constant learning rate, no
schedule, no sequence-level (generated) distillation. `max_seconds` stops the loop at a time budget (the
benchmark's "within 60 s of training").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..compression.distill import distillation_loss
from ..core.validation import check_bool, check_choice, check_module, check_number, check_positive_int
from .lora import lora_parameters, token_windows

__all__ = ["TRAIN", "DistillReport", "distill_llm"]

TRAIN = ("masked", "lora")


@dataclass(frozen=True)
class DistillReport:
    """What `distill_llm` did: the loss of every step, the steps run and the seconds they took."""

    losses: list[float]
    steps: int
    seconds: float


def _masked_weights(student: nn.Module, masks) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """[(weight, keep-mask)] of the named Linear layers, checked."""
    if not isinstance(masks, dict) or not masks:
        raise TypeError("masks must be a non-empty dict {layer name: keep-mask (out, in) bool}, such as "
                        "prune_model(...).masks")
    modules = dict(student.named_modules())
    pairs = []
    for name, mask in masks.items():
        layer = modules.get(name)
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"masks names {name!r}, which is not an nn.Linear of the student")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != layer.weight.shape:
            raise TypeError(f"masks[{name!r}] must be a bool tensor of shape {tuple(layer.weight.shape)}")
        pairs.append((layer.weight, mask.to(layer.weight.device)))
    return pairs


def distill_llm(student: nn.Module, teacher: nn.Module, tokenizer, text: str, masks=None, train: str = "masked",
                steps: int = 30, seq_len: int = 64, batch_size: int = 2, lr: float = 1e-4, T: float = 2.0,
                alpha: float = 1.0, seed: int = 0, max_seconds: float | None = None,
                progress: bool = True) -> DistillReport:
    """Distil `student` from `teacher` on random windows of `text` for `steps` AdamW steps (or `max_seconds`).

        for each step: ids <- batch_size windows of seq_len tokens (seeded)
                       L = alpha T^2 KL(softmax(z_teacher / T) || softmax(z_student / T)) + (1 - alpha) CE
                       AdamW step on the masked weights (mask held) or on the LoRA adapters

    Seeded: the same seed, models and text give the same windows and, on one CPU, the same losses. Both models
    are left in eval mode; the requires_grad flags of the student are restored afterwards.

    Shapes: text -> ids (n,) -> each step (batch_size, seq_len) -> logits (batch_size, seq_len, vocab).
    """
    check_module(student, "student")
    check_module(teacher, "teacher")
    if student is teacher:
        raise ValueError("student and teacher are the same module: distil a pruned copy from the dense model")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    check_choice(train, "train", TRAIN)
    for value, name in ((steps, "steps"), (seq_len, "seq_len"), (batch_size, "batch_size")):
        check_positive_int(value, name)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (a context and a token to predict), got {seq_len}")
    lr = check_number(lr, "lr", 0.0, low_inclusive=False)
    T = check_number(T, "T", 0.0, low_inclusive=False)
    alpha = check_number(alpha, "alpha", 0.0, high=1.0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if max_seconds is not None:
        max_seconds = check_number(max_seconds, "max_seconds", 0.0, low_inclusive=False)
    check_bool(progress, "progress")
    if train == "masked":
        pairs = _masked_weights(student, masks)
        params = [W for W, _ in pairs]
    else:
        if masks is not None:
            raise ValueError("train='lora' trains the adapters only; masks are for train='masked'")
        pairs, params = [], lora_parameters(student)
    device = params[0].device
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]  # (n,)
    if ids.numel() < seq_len:
        raise ValueError(f"text has {ids.numel()} tokens, fewer than seq_len={seq_len}")

    flags = {id(p): p.requires_grad for p in student.parameters()}
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    hooks = [W.register_hook(lambda grad, keep=keep: grad * keep) for W, keep in pairs]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses, start = [], time.perf_counter()
    teacher.eval()
    student.train()
    try:
        for _ in tqdm(range(steps), desc="distil", disable=not progress):
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                break
            batch = token_windows(ids, seq_len, batch_size, generator).to(device)  # (batch, seq_len)
            with torch.no_grad():
                z_teacher = teacher(input_ids=batch).logits[:, :-1]  # (batch, seq_len - 1, vocab)
            z_student = student(input_ids=batch).logits[:, :-1]  # (batch, seq_len - 1, vocab)
            vocab = z_student.shape[-1]
            loss = distillation_loss(z_student.reshape(-1, vocab), z_teacher.reshape(-1, vocab),  # (tokens, vocab)
                                     batch[:, 1:].reshape(-1), T=T, alpha=alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for W, keep in pairs:
                    W.mul_(keep)
            losses.append(loss.item())
    finally:
        for h in hooks:
            h.remove()
        for p in student.parameters():
            p.requires_grad_(flags[id(p)])
        student.eval()
    return DistillReport(losses, len(losses), time.perf_counter() - start)
