"""When and where to prune: the gradual cubic schedule and a per-layer sensitivity scan.

Zhu & Gupta (2017), "To prune, or not to prune": raise the sparsity from s_i to s_f over n
pruning steps, fast at first (when many weights are redundant) and slowly at the end:

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / n)^3      for t = t_0, t_0 + 1, ..., t_0 + n

Simplified here: one pruning step is a block of training epochs (the paper prunes every
Delta t optimizer steps), and the magnitude masks come from `prune.py`.

The sensitivity scan prunes one layer at a time, leaves the others intact, and records the
accuracy at each sparsity: the layers whose accuracy falls first deserve a lower sparsity.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from ..core.validation import check_bool, check_number
from ..data.digits import Digits, train
from .prune import check_sparsity, prunable_layers, prune_model, remove_masks

__all__ = ["gradual_prune", "sensitivity_scan", "sparsity_schedule"]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def sparsity_schedule(step: int, final_sparsity: float, n_steps: int, initial_sparsity: float = 0.0,
                      start_step: int = 0) -> float:
    """Zhu & Gupta's cubic schedule: s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / n)^3.

    Before `start_step` the sparsity is s_i; after `start_step + n_steps` it stays at s_f.
    """
    _check_int(step, "step", 0)
    _check_int(start_step, "start_step", 0)
    _check_int(n_steps, "n_steps", 1)
    s_f, s_i = check_sparsity(final_sparsity, "final_sparsity"), check_sparsity(initial_sparsity, "initial_sparsity")
    progress = min(max(step - start_step, 0), n_steps) / n_steps
    if progress in (0.0, 1.0):  # exact endpoints, without rounding in the formula
        return s_i if progress == 0.0 else s_f
    return s_f + (s_i - s_f) * (1.0 - progress) ** 3


def gradual_prune(model: nn.Module, data: Digits, final_sparsity: float, n_steps: int = 5,
                  epochs_per_step: int = 2, layers: Iterable[str] | None = None, scope: str = "global",
                  lr: float = 1e-3, seed: int = 0, loss_fn=None, progress: bool = False) -> list[float]:
    """Prune `model` in place along the cubic schedule, training `epochs_per_step` epochs after each step.

    At steps t = 1..n the sparsity reaches s_t (from s_0 = 0), the masks stay fixed while
    training, and at the end they are made permanent. Returns the sparsity reached at each step.
    """
    from tqdm.auto import tqdm

    _check_int(n_steps, "n_steps", 1)
    _check_int(epochs_per_step, "epochs_per_step", 1)
    check_sparsity(final_sparsity, "final_sparsity")
    check_number(lr, "lr", 0.0, low_inclusive=False)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    check_bool(progress, "progress")
    names = list(prunable_layers(model, layers))
    reached = []
    for t in tqdm(range(1, n_steps + 1), disable=not progress, desc="pruning steps"):
        s_t = sparsity_schedule(t, final_sparsity, n_steps)
        # Masks are recomputed from all weights each step; earlier zeros are the smallest, so they stay removed.
        remove_masks(model)
        prune_model(model, s_t, names, scope)
        train(model, data, epochs=epochs_per_step, lr=lr, seed=seed + t, loss_fn=loss_fn)
        reached.append(s_t)
    remove_masks(model)
    return reached


def sensitivity_scan(model: nn.Module, sparsities: Sequence[float], evaluate: Callable[[nn.Module], float],
                     layers: Iterable[str] | None = None, progress: bool = False) -> dict[str, list[float]]:
    """Prune each layer alone at each sparsity (no fine-tuning) and return {layer: [evaluate(model)]}.

    `model` itself is not changed: every point prunes a fresh copy.
    """
    from tqdm.auto import tqdm

    if not callable(evaluate):
        raise TypeError(f"evaluate must be a function model -> number (e.g. accuracy), got {type(evaluate).__name__}")
    if isinstance(sparsities, (str, bytes)) or not isinstance(sparsities, Sequence) or not sparsities:
        raise TypeError(f"sparsities must be a non-empty list of numbers from 0 to 1, got {sparsities!r}")
    sparsities = [check_sparsity(s) for s in sparsities]
    check_bool(progress, "progress")
    names = list(prunable_layers(model, layers))
    scan = {}
    for name in tqdm(names, disable=not progress, desc="layers"):
        scan[name] = []
        for s in sparsities:
            trial = copy.deepcopy(model)
            prune_model(trial, s, [name])
            scan[name].append(float(evaluate(remove_masks(trial))))
    return scan
