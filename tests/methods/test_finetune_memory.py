"""The fine-tuning memory arithmetic: QLoRA's bits per weight, adapter counts, the recipes' bytes."""

import pytest

from qlearn.methods import finetune_memory as fm


def test_double_quant_constants_match_the_paper():
    # QLoRA, section 3: 32/64 = 0.5 bits per weight of constants, 8/64 + 32/(64*256) = 0.127 with DQ
    assert fm.nf4_bits_per_weight(64, double_quant=False) == 4.5
    assert round(fm.nf4_bits_per_weight(64, double_quant=True) - 4, 3) == 0.127


def test_lora_params_on_a_llama_decoder():
    shapes = fm.decoder_linear_shapes(hidden=8, intermediate=16, layers=2, kv_dim=4)
    assert len(shapes) == 14 and shapes[1] == (4, 8) and shapes[6] == (8, 16)
    per_layer = 2 * (8 + 8) + 2 * (8 + 4) + 3 * (8 + 16)
    assert fm.lora_params(shapes, r=2) == 2 * 2 * per_layer


def test_recipes_bytes_per_parameter():
    n, nq, na = 1000, 800, 10
    assert fm.finetune_bytes(n, nq, na, "full fp32")["total"] == 16 * n
    assert fm.finetune_bytes(n, nq, na, "full 16-bit")["total"] == 12 * n  # the paper's 780 GB for 65B
    assert fm.finetune_bytes(n, nq, na, "LoRA (fp16 base)")["total"] == 2 * n + 16 * na
    qlora = fm.finetune_bytes(n, nq, na, "QLoRA (NF4 + DQ base)")
    assert qlora["base"] == pytest.approx(nq * fm.nf4_bits_per_weight() / 8 + 2 * (n - nq))
    assert qlora["total"] == pytest.approx(qlora["base"] + 16 * na)


@pytest.mark.parametrize("call, error", [
    (lambda: fm.finetune_bytes(10, 11, 1, "full fp32"), ValueError),
    (lambda: fm.finetune_bytes(10, 5, 1, "adam"), ValueError),
    (lambda: fm.finetune_bytes(0, 0, 1, "full fp32"), ValueError),
    (lambda: fm.lora_params([], 8), ValueError),
    (lambda: fm.lora_params([(4, 4)], 0), ValueError),
    (lambda: fm.decoder_linear_shapes(8, 16, 0), ValueError),
], ids=["quantized>all", "recipe", "no-params", "no-shapes", "r0", "layers0"])
def test_bad_inputs(call, error):
    with pytest.raises(error):
        call()
