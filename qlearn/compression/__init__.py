"""Notebook 07: pruning and distillation.

    prune       magnitude pruning of a tensor or a model, layer-wise or global, with torch's prune masks
    schedules   the cubic sparsity schedule, gradual pruning, the sensitivity scan
    structured  structured pruning: whole neurons removed, a smaller dense model
    distill     the Hinton distillation loss and training loop

Beside `inference` in the middle layer: imports core and data only.
"""

from . import distill, prune, schedules, structured

__all__ = ["distill", "prune", "schedules", "structured"]
