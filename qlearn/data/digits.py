"""The 8x8 digits data set that ships with scikit-learn, and two small models to compress.

Everything here is offline and seeded, and trains in seconds on a laptop CPU, so the
QAT, pruning and distillation notebooks can measure accuracy for real.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.validation import check_bool, check_number

__all__ = ["N_CLASSES", "N_PIXELS", "PRETRAINED", "Digits", "accuracy", "cnn", "load_digits", "mlp", "pretrained_mlp",
           "train"]

N_CLASSES = 10
N_PIXELS = 64


@dataclass(frozen=True)
class Digits:
    """A fixed train / test split. Shapes: X_* (n, 64) float32 in [0, 1], y_* (n,) int64."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def load_digits(test_size: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's 1,797 digits, pixels scaled to [0, 1], split stratified with `seed`."""
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    if not isinstance(test_size, float) or not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a float strictly between 0 and 1, got {test_size!r}")
    data = _load()
    X = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64)
    y = torch.tensor(data.target, dtype=torch.int64)  # (1797,)
    idx_train, idx_test = train_test_split(torch.arange(len(y)).numpy(), test_size=test_size,
                                           random_state=seed, stratify=y.numpy())
    return Digits(X[idx_train], y[idx_train], X[idx_test], y[idx_test])


def mlp(hidden: int = 128, seed: int = 0) -> nn.Sequential:
    """64 -> hidden -> hidden -> 10 with ReLU. Input (n, 64), output logits (n, 10)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(N_PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, N_CLASSES))


def cnn(channels: int = 16, seed: int = 0) -> nn.Sequential:
    """A small CNN on 8x8 images. Input (n, 64) (reshaped to (n, 1, 8, 8) inside), output (n, 10)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),  # (n, c, 8, 8)
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),  # (n, 2c, 8, 8)
        nn.MaxPool2d(2),  # (n, 2c, 4, 4)
        nn.Flatten(), nn.Linear(2 * channels * 16, N_CLASSES),
    )


def train(model: nn.Module, data: Digits, epochs: int = 30, lr: float = 1e-3, batch_size: int = 64,
          seed: int = 0, loss_fn=None, progress: bool = False) -> list[float]:
    """Adam on cross-entropy (or `loss_fn(logits, X, y)`), seeded shuffling. Returns the loss per epoch."""
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, Digits):
        raise TypeError("data must be a Digits split from load_digits()")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    check_number(lr, "lr", 0.0, low_inclusive=False)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    check_bool(progress, "progress")
    loss_fn = loss_fn or (lambda logits, X, y: nn.functional.cross_entropy(logits, y))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), disable=not progress, desc="epochs"):
        order = torch.randperm(len(data.y_train), generator=gen)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            X, y = data.X_train[idx], data.y_train[idx]
            loss = loss_fn(model(X), X, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(order))
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, data: Digits, split: str = "test") -> float:
    """Fraction of correctly classified digits in `split` ('train' or 'test'), as a percentage."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, Digits):
        raise TypeError("data must be a Digits split from load_digits()")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    X, y = (data.X_test, data.y_test) if split == "test" else (data.X_train, data.y_train)
    was_training = model.training
    model.eval()
    pred = model(X).argmax(dim=-1)
    model.train(was_training)
    return round(100.0 * float((pred == y).double().mean()), 4)


PRETRAINED = {128: "digits_mlp.safetensors", 256: "digits_mlp_h256.safetensors"}  # hidden -> shipped file


def pretrained_mlp(hidden: int = 128) -> nn.Sequential:
    """A float `mlp(hidden)` trained by scripts/train_digits_baseline.py (shipped as safetensors).

    hidden=128 is the baseline of notebook 06, hidden=256 the teacher of notebook 07. Both were trained with
    `train(mlp(hidden, seed=0), load_digits(), epochs=30, lr=1e-3, seed=0)`. Shipping the trained weights
    saves the training time, and every machine starts from the same model: training on another CPU sums
    floats in another order and ends with slightly different weights.

    Input (n, 64), output logits (n, 10); eval mode.
    """
    from importlib.resources import files

    from safetensors.torch import load

    if isinstance(hidden, bool) or hidden not in PRETRAINED:
        raise ValueError(f"pretrained_mlp ships hidden sizes {sorted(PRETRAINED)}, got {hidden!r}")
    model = mlp(hidden=hidden, seed=0)
    blob = files("qlearn").joinpath("data", PRETRAINED[hidden]).read_bytes()
    model.load_state_dict(load(blob))
    return model.eval()
