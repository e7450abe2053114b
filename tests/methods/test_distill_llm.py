"""distill_llm: the loss is T^2 KL(teacher || student) per token (checked by hand), the masks hold, it brings a
pruned student back toward the teacher, seeded, LoRA mode trains only the adapters."""

import copy

import pytest
import torch
from torch import nn

from qlearn.methods.distill_llm import distill_llm
from qlearn.methods.lora import add_lora, token_windows
from qlearn.methods.pruning import prune_model

from .test_pruning import batches, linears, tiny_llama

TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 8


def tokenizer(text, return_tensors="pt"):
    """A byte tokenizer for the tiny Llama (vocab 64)."""
    return {"input_ids": torch.tensor([[b % 64 for b in text.encode()]])}


def pruned_pair(pattern="2:4", seed=0):
    teacher = tiny_llama(seed)
    student = copy.deepcopy(teacher)
    report = prune_model(student, method="wanda", pattern=pattern, calibration=batches())
    return teacher, student, report


@torch.no_grad()
def held_out_kl(teacher, student):
    ids = tokenizer(TEXT[:200])["input_ids"]  # (1, 200)
    p = teacher(ids).logits.log_softmax(-1)
    q = student(ids).logits.log_softmax(-1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def test_the_first_loss_is_t_squared_kl_per_token_by_hand():
    teacher, student, report = pruned_pair()
    T, seq, batch = 3.0, 16, 2
    ids = token_windows(tokenizer(TEXT)["input_ids"][0], seq, batch, torch.Generator().manual_seed(7))
    with torch.no_grad():
        p = (teacher(ids).logits[:, :-1] / T).log_softmax(-1)  # (batch, seq - 1, vocab)
        q = (student(ids).logits[:, :-1] / T).log_softmax(-1)
    expected = T * T * float((p.exp() * (p - q)).sum(-1).mean())
    out = distill_llm(student, teacher, tokenizer, TEXT, masks=report.masks, steps=1, seq_len=seq, batch_size=batch,
                      T=T, seed=7, progress=False)
    assert out.losses[0] == pytest.approx(expected, rel=1e-5)


def test_next_token_loss_joins_in_below_alpha_one():
    teacher = tiny_llama()
    student = copy.deepcopy(teacher)
    report = prune_model(student, method="magnitude", sparsity=0.0)
    out = distill_llm(student, teacher, tokenizer, TEXT, masks=report.masks, steps=1, seq_len=16, alpha=0.5,
                      seed=3, progress=False)  # student = teacher: KL = 0, the loss is half the cross-entropy
    ids = token_windows(tokenizer(TEXT)["input_ids"][0], 16, 2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        ce = nn.functional.cross_entropy(teacher(ids).logits[:, :-1].reshape(-1, 64), ids[:, 1:].reshape(-1))
    assert out.losses[0] == pytest.approx(0.5 * float(ce), rel=1e-5)


@pytest.mark.parametrize("pattern", [None, "2:4"], ids=["50%", "2:4"])
def test_masks_hold_and_the_student_comes_back_toward_the_teacher(pattern):
    teacher, student, report = pruned_pair(pattern)
    embed = student.model.embed_tokens.weight.clone()
    before = held_out_kl(teacher, student)
    out = distill_llm(student, teacher, tokenizer, TEXT, masks=report.masks, steps=40, seq_len=32, batch_size=4,
                      lr=3e-3, progress=False)
    assert out.steps == 40 and out.losses[-1] < out.losses[0]
    assert held_out_kl(teacher, student) < 0.7 * before
    for name, layer in linears(student).items():
        assert torch.equal(layer.weight == 0, ~report.masks[name]), name  # the zeros, and only they
    assert torch.equal(student.model.embed_tokens.weight, embed)  # not in masks: frozen
    assert all(p.requires_grad for p in student.parameters())  # flags restored


def test_seeded():
    runs = []
    for seed in (0, 0, 1):
        teacher, student, report = pruned_pair()
        runs.append(distill_llm(student, teacher, tokenizer, TEXT, masks=report.masks, steps=3, seq_len=16,
                                seed=seed, progress=False).losses)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_lora_mode_trains_only_the_adapters():
    teacher, student, report = pruned_pair()
    weights = {n: m.weight.clone() for n, m in linears(student).items()}
    add_lora(student, r=4, targets=("q_proj", "v_proj", "up_proj", "down_proj"))
    before = held_out_kl(teacher, student)
    distill_llm(student, teacher, tokenizer, TEXT, train="lora", steps=30, seq_len=32, batch_size=4, lr=3e-3,
                progress=False)
    assert held_out_kl(teacher, student) < before
    for name, W in weights.items():
        base = student.get_submodule(name)
        assert torch.equal(getattr(base, "base", base).weight, W), name


def test_max_seconds_stops_the_loop():
    teacher, student, report = pruned_pair()
    out = distill_llm(student, teacher, tokenizer, TEXT, masks=report.masks, steps=10_000, seq_len=16,
                      max_seconds=0.5, progress=False)
    assert 0 < out.steps < 10_000 and out.seconds < 5


BAD = [
    ("masks-none", dict(masks=None), TypeError, "masks must be"),
    ("masks-name", dict(masks={"lm": torch.ones(2, 2, dtype=torch.bool)}), ValueError, "not an nn.Linear"),
    ("train", dict(train="all"), ValueError, "train must be one of"),
    ("lora-none", dict(train="lora", masks=None), ValueError, "no LoRA adapters"),
    ("T", dict(T=0.0), ValueError, "T"),
    ("alpha", dict(alpha=1.5), ValueError, "alpha"),
    ("seq", dict(seq_len=1), ValueError, "seq_len"),
    ("text", dict(text=" "), ValueError, "text"),
]


@pytest.mark.parametrize("case,kwargs,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused(case, kwargs, error, match):
    teacher, student, report = pruned_pair()
    args = dict(student=student, teacher=teacher, tokenizer=tokenizer, text=TEXT, masks=report.masks, steps=1,
                progress=False) | kwargs
    with pytest.raises(error, match=match):
        distill_llm(**args)
