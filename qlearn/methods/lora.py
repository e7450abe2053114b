"""LoRA adapters on a frozen linear layer (Hu et al., 2021), the trainable half of QLoRA (Dettmers et al., 2023).

    y = base(x) + (alpha / r) * dropout(x) A^T B^T        A (r, in), B (out, r), r << min(in, out)

The base layer (nn.Linear, QuantLinear or NF4Linear) is frozen: it gets no gradient and no optimizer
state. Only A and B train. A starts random (kaiming-uniform with a = sqrt(5), as peft and nn.Linear do)
and B at zero, so B A = 0 and training starts exactly at the base model. Over an NF4 base this is QLoRA:
the 4-bit weights are dequantized on every forward and the gradient flows through them to the input.

Simplified: one adapter per layer (no adapter names, no switching), no bias training, adapters kept in
float32 whatever the base's dtype (peft's default `autocast_adapter_dtype=True` does the same for fp16/bf16).
`merge_lora` folds B A into a float nn.Linear: W' = W_hat + (alpha / r) B A, to re-quantize afterwards.

Training (`train_lora`): a small seeded loop, AdamW on A and B only, next-token loss:

    for step in 1..steps:
        ids  <- `batch_size` windows of `seq_len` tokens of the text, at seeded random offsets
        loss <- mean cross-entropy of predicting ids[t + 1] from ids[:t + 1]
        A, B <- AdamW step (the frozen base has no gradient and no optimizer state)

Short windows and a few dozen steps keep it CPU-friendly; the full runs live in benchmarks/bench_qlora.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.modules import replace_module
from ..core.validation import check_bool, check_module, check_number, check_positive_int
from ..inference.linear import QuantLinear
from ..inference.quantize_model import model_size_bytes
from ..inference.targets import exclude_patterns, matches
from .nf4 import NF4Linear

__all__ = ["LINEARS", "LoRALinear", "LoRAReport", "add_lora", "base_weight", "count_params", "lora_parameters",
           "merge_lora", "token_windows", "train_lora"]

LINEARS = (nn.Linear, QuantLinear, NF4Linear)


def base_weight(layer: nn.Module) -> torch.Tensor:
    """W (out, in) of a course linear layer: the float weight, or W_hat dequantized from the stored codes."""
    if not isinstance(layer, LINEARS):
        raise TypeError(f"layer must be one of {[c.__name__ for c in LINEARS]}, got {type(layer).__name__}")
    return layer.weight.detach() if isinstance(layer, nn.Linear) else layer.dequantized_weight()


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update (see the module docstring).

    Shapes: x (..., in) -> y (..., out); lora_A (r, in); lora_B (out, r).
    """

    def __init__(self, base: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, LINEARS):
            raise TypeError(f"LoRA wraps a linear layer ({', '.join(c.__name__ for c in LINEARS)}), "
                            f"got {type(base).__name__}")
        self.r = check_positive_int(r, "r")
        self.alpha = check_number(alpha, "alpha", 0.0, low_inclusive=False)
        p = check_number(dropout, "dropout", 0.0, high=1.0)
        if p == 1.0:
            raise ValueError("dropout must be below 1 (1 would drop every input of the adapter)")
        self.scaling = self.alpha / self.r
        self.base = base
        if r > min(base.in_features, base.out_features):
            raise ValueError(f"r={r} is larger than the layer ({base.out_features} x {base.in_features}): a rank-r "
                             f"update needs r <= {min(base.in_features, base.out_features)}")
        for param in base.parameters():
            param.requires_grad_(False)
        device = next(iter(base.buffers() if not isinstance(base, nn.Linear) else base.parameters())).device
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=device))   # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=device))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update the adapter adds to W: (alpha / r) * B A, shape (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out), no gradient to the base
        z = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T  # (..., r)
        return y + (self.scaling * (z @ self.lora_B.T)).to(y.dtype)  # (..., out)

    def merged(self) -> nn.Linear:
        """A float nn.Linear with W' = W_hat + (alpha / r) B A and the base's bias (the adapters folded in)."""
        W = base_weight(self.base)
        bias = getattr(self.base, "bias", None)
        layer = nn.Linear(self.in_features, self.out_features, bias=bias is not None, device=W.device, dtype=W.dtype)
        with torch.no_grad():
            layer.weight.copy_(W + self.delta_weight().detach().to(W.dtype))
            if bias is not None:
                layer.bias.copy_(bias.detach())
        return layer

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}"


@dataclass(frozen=True)
class LoRAReport:
    """What `add_lora` did, and the memory that training the adapters with Adam needs (bytes).

    base_bytes: every stored parameter and buffer of the model before the adapters (as model_size_bytes);
    adapter_bytes: A and B; gradient_bytes: their gradients (the base has none);
    optimizer_bytes: Adam's two moments per trainable parameter, at the adapters' dtype.
    total_params counts a quantized layer's weight as out * in parameters, not its packed bytes.
    """

    wrapped: tuple[str, ...]
    r: int
    alpha: float
    trainable_params: int
    total_params: int
    base_bytes: int
    adapter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int

    @property
    def trainable_share(self) -> float:
        """trainable_params / total_params (adapters included in the total)."""
        return self.trainable_params / self.total_params

    def summary(self) -> str:
        mib = 2**20
        return (f"{len(self.wrapped)} layers with LoRA r={self.r}: {self.trainable_params:,} of "
                f"{self.total_params:,} parameters trained ({100 * self.trainable_share:.2f} %); "
                f"base {self.base_bytes / mib:.1f} MiB, adapters {self.adapter_bytes / mib:.2f} MiB, "
                f"gradients {self.gradient_bytes / mib:.2f} MiB, Adam state {self.optimizer_bytes / mib:.2f} MiB")


def count_params(model: nn.Module) -> int:
    """Parameters of `model`, each once; a QuantLinear / NF4Linear weight counts out * in (its codes)."""
    check_module(model)
    seen = {id(p): p.numel() for p in model.parameters()}
    quantized = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, (QuantLinear, NF4Linear)))
    return sum(seen.values()) + quantized


def _select(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Names of the linear layers `patterns` pick, with clear errors for patterns that pick none."""
    modules = {name: m for name, m in model.named_modules() if name}
    chosen = []
    for pattern in patterns:
        hits = [name for name in modules if matches(name, pattern)]
        if not hits:
            raise ValueError(f"target {pattern!r} matches no module of the model; some module names: "
                             f"{list(modules)[:8]}")
        linear = [name for name in hits if isinstance(modules[name], LINEARS)]
        if not linear:
            kinds = sorted({type(modules[name]).__name__ for name in hits})
            raise TypeError(f"target {pattern!r} matches {hits[:3]} ({', '.join(kinds)}), not a linear layer; "
                            f"LoRA wraps {', '.join(c.__name__ for c in LINEARS)}")
        chosen += [name for name in linear if name not in chosen]
    return chosen


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16, targets=("q_proj", "v_proj"),
             dropout: float = 0.0) -> tuple[nn.Module, LoRAReport]:
    """Freeze every parameter of `model` and wrap each target linear layer in a LoRALinear, in place.

        for each linear layer whose name matches `targets` (names or glob patterns, as quantize_model's exclude):
            layer <- LoRALinear(layer, r, alpha): y = layer(x) + (alpha / r) x A^T B^T

    Returns (model, LoRAReport). Everything is checked before the first replacement.

    Shapes: each target (out, in) gets lora_A (r, in) and lora_B (out, r): r * (in + out) parameters.
    """
    check_module(model)
    if isinstance(model, LINEARS + (LoRALinear,)):
        raise TypeError("add_lora wraps layers inside a model; for one layer use LoRALinear(layer, r, alpha)")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA adapters; merge_lora(model) first, or train those")
    check_positive_int(r, "r")
    check_number(alpha, "alpha", 0.0, low_inclusive=False)
    patterns = exclude_patterns(targets, "targets")
    if not patterns:
        raise ValueError("targets is empty; name the linear layers to adapt, e.g. ('q_proj', 'v_proj')")
    names = _select(model, patterns)
    total_before = count_params(model)
    base_bytes = model_size_bytes(model)
    new = {name: LoRALinear(model.get_submodule(name), r=r, alpha=alpha, dropout=dropout) for name in names}
    for param in model.parameters():
        param.requires_grad_(False)
    for name, layer in new.items():
        replace_module(model, name, layer)
    adapters = [p for layer in new.values() for p in (layer.lora_A, layer.lora_B)]
    trainable = sum(p.numel() for p in adapters)
    adapter_bytes = sum(p.numel() * p.element_size() for p in adapters)
    report = LoRAReport(tuple(names), r, float(alpha), trainable, total_before + trainable, base_bytes,
                        adapter_bytes, adapter_bytes, 2 * adapter_bytes)
    return model, report


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapters' A and B of every LoRALinear in `model` (what the optimizer gets)."""
    params = [p for m in check_module(model).modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]
    if not params:
        raise ValueError("the model has no LoRA adapters; call add_lora(model, ...) first")
    return params


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by a float nn.Linear with W' = W_hat + (alpha / r) B A, in place.

    The merged layers are float (re-quantize them, e.g. with replace_linears_nf4); other parameters
    stay frozen as add_lora left them. Returns the model.

    Shapes: W_hat (out, in) + (out, r) @ (r, in) -> W' (out, in).
    """
    check_module(model)
    if isinstance(model, LoRALinear):
        raise TypeError("merge_lora works on a model; for one layer call layer.merged()")
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not names:
        raise ValueError("the model has no LoRA adapters to merge (add_lora was not called, or already merged)")
    for name in names:
        replace_module(model, name, model.get_submodule(name).merged())
    return model


# ---- training ------------------------------------------------------------------------------------------------

def token_windows(ids: torch.Tensor, seq_len: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` random windows of `seq_len` tokens from a 1-D id tensor.

    Shapes: ids (n,) -> (batch_size, seq_len).
    """
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool \
            or ids.ndim != 1:
        raise TypeError(f"ids must be a 1-D tensor of integer token ids, got "
                        f"{ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__}")
    check_positive_int(seq_len, "seq_len")
    check_positive_int(batch_size, "batch_size")
    if seq_len > ids.numel():
        raise ValueError(f"seq_len={seq_len} is longer than the {ids.numel()} ids")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (seeded), got {type(generator).__name__}")
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
    check_module(model, "model (a causal LM with LoRA adapters)")
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
