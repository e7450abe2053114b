"""The LoRA rank explorer: exact counts per rank, the precomputed loss, redraw on a slider move."""

import pytest

from qlearn.methods.finetune_memory import decoder_linear_shapes, lora_params
from qlearn.widgets.lora import rank_explorer

SHAPES = decoder_linear_shapes(32, 64, 2, kv_dim=16)
LOSSES = {1: 3.0, 2: 2.5, 4: 2.2, 8: 2.0}


def test_rank_explorer_redraws_with_exact_counts():
    explorer = rank_explorer(SHAPES, total_params=50_000, final_loss=LOSSES, r=8)
    assert explorer.last["params"] == lora_params(SHAPES, 8) and explorer.figure is not None
    explorer.controls["r"].value = 2
    assert explorer.calls == 2 and explorer.last["r"] == 2
    assert explorer.last["adapter_bytes"] == 4 * lora_params(SHAPES, 2) and explorer.last["final_loss"] == 2.5
    explorer.controls["r"].value = 64
    assert explorer.last["final_loss"] is None and explorer.last["params"] == lora_params(SHAPES, 64)
    assert explorer.last["share_percent"] == pytest.approx(100 * lora_params(SHAPES, 64)
                                                           / (50_000 + lora_params(SHAPES, 64)))


@pytest.mark.parametrize("kwargs, error", [({"r": 3}, ValueError), ({"final_loss": {}}, TypeError),
                                           ({"final_loss": {3: 1.0}}, TypeError), ({"total_params": 0}, ValueError)],
                         ids=["r-not-swept", "no-losses", "odd-rank", "total0"])
def test_rank_explorer_bad_inputs(kwargs, error):
    with pytest.raises(error):
        rank_explorer(SHAPES, **{"total_params": 50_000, "final_loss": LOSSES, "r": 8, **kwargs})
