"""The pruning explorer of notebook 13: magnitude, Wanda and SparseGPT on one layer, over sparsity and pattern."""

from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from ..compression.prune import NM_PATTERNS
from ..core.validation import check_choice, check_inputs, check_number, check_weight
from ..methods import sparsegpt, wanda
from ..methods.pruning import magnitude_weight
from ._base import Explorer

__all__ = ["METHOD_COLORS", "SPARSITIES", "pruning_explorer", "pruning_plot", "pruning_sweep"]

SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METHOD_COLORS = {"magnitude": "tab:gray", "wanda": "tab:orange", "sparsegpt": "tab:blue"}


def pruning_sweep(W: torch.Tensor, X: torch.Tensor, X_test: torch.Tensor, sparsity: float = 0.5,
                  pattern: str | None = None) -> dict:
    """The three methods on one layer: each one's surviving weights and its held-out relative output error.

        error = ||X_test W^T - X_test W_p^T|| / ||X_test W^T||        (W_p: the pruned weight)

    With a pattern, sparsity is the pattern's n / m. Wanda and SparseGPT see X (calibration), the error X_test.
    Shapes: W (out, in); X, X_test (tokens, in) -> {"sparsity", "pattern", "kept": {method: (kept,) float32},
    "error": {method: float}}.
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="pruning_sweep")
    check_inputs(X_test, W, required=True, method="pruning_sweep")
    check_choice(pattern, "pattern", (None,) + NM_PATTERNS)
    if pattern is not None:
        n, m = (int(p) for p in pattern.split(":"))
        sparsity = n / m
    sparsity = check_number(sparsity, "sparsity", 0.0, high=1.0, high_inclusive=False)
    W, X, X_test = W.detach().float(), X.detach().float(), X_test.detach().float()
    pruned = {"magnitude": magnitude_weight(W, sparsity, pattern), "wanda": wanda.prune_weight(W, X, sparsity, pattern),
              "sparsegpt": sparsegpt.prune_weight(W, X, sparsity, pattern)}
    Y = X_test @ W.T  # (tokens, out)
    return {"sparsity": sparsity, "pattern": pattern,
            "kept": {k: W_p[W_p != 0] for k, W_p in pruned.items()},
            "error": {k: float((Y - X_test @ W_p.T).norm() / Y.norm()) for k, W_p in pruned.items()}}


def pruning_plot(result: dict, W: torch.Tensor, title: str = ""):
    """Left: histograms of the surviving weights (the dense weight in light grey); right: each method's error."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
    edges = torch.linspace(float(W.min()), float(W.max()), 81).tolist()
    left.hist(W.detach().flatten().float().numpy(), bins=edges, color="0.85", label="dense")
    for method, kept in result["kept"].items():
        left.hist(kept.numpy(), bins=edges, histtype="step", lw=1.5, color=METHOD_COLORS[method], label=method)
    left.set_yscale("log")
    left.set_xlabel("weight value (surviving weights)")
    left.set_ylabel("count")
    left.legend(fontsize=8)
    names = list(result["error"])
    right.bar(names, [result["error"][k] for k in names], color=[METHOD_COLORS[k] for k in names])
    for i, k in enumerate(names):
        right.text(i, result["error"][k], f"{result['error'][k]:.3f}", ha="center", va="bottom", fontsize=8)
    right.set_ylabel("held-out relative output error")
    shape = result["pattern"] or f"{result['sparsity']:.0%} unstructured"
    fig.suptitle(f"{title}: {shape}" if title else shape)
    fig.tight_layout()
    return fig


def pruning_explorer(W: torch.Tensor, X: torch.Tensor, X_test: torch.Tensor, sparsity: float = 0.5,
                     pattern: str | None = None, title: str = "") -> Explorer:
    """A widget around `pruning_sweep`: a sparsity slider and a pattern dropdown (a pattern fixes the sparsity).

    Each setting is computed once and cached. Keep the layer a few hundred columns wide: SparseGPT's loop runs
    once per column. Shapes: W (out, in); X, X_test (tokens, in).
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="pruning_explorer")
    check_inputs(X_test, W, required=True, method="pruning_explorer")
    if sparsity not in SPARSITIES:
        raise ValueError(f"sparsity must be one of {SPARSITIES}, got {sparsity!r}")
    check_choice(pattern, "pattern", (None,) + NM_PATTERNS)
    slider = w.SelectionSlider(options=list(SPARSITIES), value=sparsity, description="sparsity",
                               continuous_update=False)
    dropdown = w.Dropdown(options=[("unstructured", None)] + [(p, p) for p in NM_PATTERNS], value=pattern,
                          description="pattern")
    out = w.Output()
    explorer = Explorer(w.VBox([w.HBox([slider, dropdown]), out]), {"sparsity": slider, "pattern": dropdown}, out,
                        title="pruning explorer")
    cache: dict = {}

    def redraw(*_):
        key = (None if dropdown.value else slider.value, dropdown.value)
        if key not in cache:
            cache[key] = pruning_sweep(W, X, X_test, slider.value, dropdown.value)
        result = cache[key]
        explorer.last = {"sparsity": result["sparsity"], "pattern": result["pattern"], **result["error"]}
        explorer.show(pruning_plot(result, W, title))
        explorer.calls += 1

    slider.observe(redraw, names="value")
    dropdown.observe(redraw, names="value")
    redraw()
    return explorer
