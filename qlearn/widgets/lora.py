"""Explorer for notebook 10: sweep the LoRA rank r; trained parameters and bytes exactly, final losses as measured."""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as w

from ..methods.finetune_memory import lora_params
from ..plots.lora import rank_sweep
from ._base import Explorer

__all__ = ["RANKS", "rank_explorer"]

RANKS = (1, 2, 4, 8, 16, 32, 64)


def rank_explorer(shapes, total_params: int, final_loss: Mapping[int, float], r: int = 8) -> Explorer:
    """A rank slider over RANKS: the adapters' exact size at each r, and the final losses measured so far.

    For each r it computes the adapters' parameters r * (in + out) summed over `shapes` ((out, in) of the
    adapted layers), their fp32 bytes and Adam's 2 moments. `final_loss` ({r: loss after training at r},
    measured beforehand, any subset of RANKS) is drawn where it exists; the other ranks say "not measured".
    """
    if not isinstance(final_loss, Mapping) or not final_loss or not set(final_loss) <= set(RANKS):
        raise TypeError(f"final_loss must be a non-empty dict {{rank: final training loss}} with ranks in {RANKS}")
    ranks = list(RANKS)
    if r not in RANKS:
        raise ValueError(f"r must be one of {RANKS}, got {r!r}")
    if isinstance(total_params, bool) or not isinstance(total_params, int) or total_params < 1:
        raise ValueError(f"total_params must be a positive int, got {total_params!r}")
    params = [lora_params(shapes, k) for k in ranks]
    nbytes = [4 * p for p in params]
    losses = [float(final_loss[k]) if k in final_loss else None for k in ranks]
    r_w = w.SelectionSlider(options=ranks, value=r, description="rank r", continuous_update=False)
    readout, out = w.HTML(), w.Output()
    explorer = Explorer(w.VBox([r_w, readout, out]), {"r": r_w}, out, title="LoRA rank explorer")

    def redraw(*_):
        k = r_w.value
        i = ranks.index(k)
        share = 100 * params[i] / (total_params + params[i])
        explorer.last = {"r": k, "params": params[i], "adapter_bytes": nbytes[i], "adam_bytes": 2 * nbytes[i],
                         "share_percent": share, "final_loss": losses[i]}
        loss = "not measured at this rank" if losses[i] is None else f"{losses[i]:.2f}"
        readout.value = (f"<b>r = {k}</b>: {params[i]:,} trained parameters ({share:.2f} % of the model), "
                         f"adapters {nbytes[i] / 2**20:.2f} MiB + Adam {2 * nbytes[i] / 2**20:.2f} MiB; "
                         f"final training loss {loss}")
        explorer.show(rank_sweep(ranks, params, nbytes, losses, k, total_params + params[i]))
        explorer.calls += 1

    r_w.observe(redraw, names="value")
    redraw()
    return explorer
