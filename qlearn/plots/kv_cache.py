"""The KV cache: where keys and values are large, and what quantizing them does to the attention scores.

    kv_channel_plot   per-channel max|k| before and after RoPE and max|v|, one line per layer
    kv_error_plot     histogram of the attention-score error P_hat - P, and the cache's bytes against float16
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

__all__ = ["kv_channel_plot", "kv_error_plot"]

PANELS = (("k_pre", "keys before RoPE"), ("k", "keys after RoPE (cached)"), ("v", "values (cached)"))


def kv_channel_plot(states: dict, title: str | None = None):
    """One panel each for keys before RoPE, cached keys and values: max over tokens of |x| per channel, per layer.

    Channels of every kv head side by side (head h holds channels h * head_dim .. (h + 1) * head_dim - 1).
    Shapes: states {layer: {"k_pre", "k", "v": (kv_heads, T, d)}} (attention_states' output) -> a Figure, 3 Axes.
    """
    ok = isinstance(states, dict) and states and all(
        isinstance(s, dict) and all(isinstance(s.get(n), torch.Tensor) for n, _ in PANELS) for s in states.values())
    if not ok:
        raise TypeError("states must be the dict attention_states(model, ids, layers) returns")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), sharey=True)
    for ax, (name, label) in zip(axes, PANELS):
        for layer, s in states.items():
            x = s[name].abs().amax(dim=1).flatten()  # (kv_heads * d,): max over tokens, heads side by side
            ax.plot(x.numpy(), lw=0.8, label=f"layer {layer}")
        heads, _, d = next(iter(states.values()))[name].shape
        for h in range(1, heads):
            ax.axvline(h * d, color="k", lw=0.5, ls=":")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("channel (kv heads side by side)")
        ax.set_yscale("log")
    axes[0].set_ylabel("max over tokens |x|")
    axes[-1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def kv_error_plot(result: dict, float16_bytes: int, title: str = ""):
    """Histogram of the attention-score error (left, log counts) and the cache's bytes against float16 (right).

    Shapes: result = attention_error(...)'s dict ("score_error" (n,), "output_error", "nbytes") -> a Figure, 2 Axes.
    """
    if not isinstance(result, dict) or not isinstance(result.get("score_error"), torch.Tensor):
        raise TypeError("result must be the dict attention_error(q, k, v, ...) returns")
    if isinstance(float16_bytes, bool) or not isinstance(float16_bytes, int) or float16_bytes <= 0:
        raise ValueError(f"float16_bytes must be a positive int (the float16 cache's bytes), got {float16_bytes!r}")
    err = result["score_error"].float()
    fig, (ax, ax_b) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [2.2, 1]})
    ax.hist(err.numpy(), bins=101, range=(-0.2, 0.2), color="tab:blue", log=True)
    ax.set_xlabel("P_hat - P  (attention probability error; clipped to ±0.2)")
    ax.set_ylabel("entries")
    ax.set_title(f"{title}  max |P_hat - P| = {float(err.abs().max()):.3f}, "
                 f"output error {100 * result['output_error']:.1f} %", fontsize=9)
    ratio = result["nbytes"] / float16_bytes
    ax_b.bar(["float16", "this cache"], [1.0, ratio], color=["tab:gray", "tab:green"])
    ax_b.set_ylabel("bytes / float16's")
    ax_b.set_ylim(0, 1.1)
    ax_b.text(1, ratio + 0.03, f"{ratio:.3f}x", ha="center", fontsize=9)
    fig.tight_layout()
    return fig
