"""One test per class of bad input that once got through (issue: methods layout and hardening).

Non-finite options, float16 weights at the edge of their range, extreme magnitudes, GPTQ's Hessian at any scale,
AWQLinear's input, bfloat16 / float16 models through every method, a NaN in one layer, calibration batches the
model cannot run, and messages that must say what is true.
"""

import pytest
import torch
from torch import nn

from qlearn import PerGroup, quantize_model
from qlearn.methods import awq, gptq, hqq, llm_int8, lora, nf4, rtn, smoothquant

from .toys import ar1_inputs


def tiny_llama(dtype=torch.float32, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval().to(dtype)


def token_batches(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 96, (2, 16), generator=g)} for _ in range(n)]


# ---- non-finite options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")], ids=["inf", "-inf", "nan"])
def test_non_finite_options_are_refused(value):
    W, X = torch.randn(8, 64), torch.randn(32, 64)
    with pytest.raises(ValueError, match="damp"):
        gptq.quantize_weight(W, X, group_size=32, damp=value)
    with pytest.raises(ValueError, match="alpha"):
        lora.LoRALinear(nn.Linear(64, 8), r=2, alpha=value)
    with pytest.raises(ValueError, match="alpha"):
        lora.add_lora(tiny_llama(), r=2, alpha=value)
    with pytest.raises(ValueError, match="beta"):
        hqq.quantize_weight(W, group_size=32, beta=value)
    with pytest.raises(ValueError, match="threshold"):
        llm_int8.check_threshold(value)
    with pytest.raises(ValueError, match="alpha"):
        smoothquant.check_alpha(value)


# ---- float16 at the edge of its range; extreme magnitudes ---------------------------------------------------

@pytest.mark.parametrize("method", ["rtn", "gptq", "awq", "hqq", "nf4"])
def test_float16_weights_near_65504_dequantize_finite(method):
    W = torch.randn(8, 64)
    W[:, 0], W[:, 1] = 65504.0, -65504.0  # every group's range reaches float16's largest value
    W = W.half()
    X = torch.randn(64, 64)
    module = {"rtn": rtn, "gptq": gptq, "awq": awq, "hqq": hqq, "nf4": nf4}[method]
    qw = module.quantize_weight(W, X, bits=4, group_size=32)
    W_hat = qw.dequantize()
    assert W_hat.dtype == torch.float16 and bool(torch.isfinite(W_hat).all())


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq", "hqq", "nf4"])
@pytest.mark.parametrize("W", [torch.full((4, 64), 3e38).mul_(torch.randn(4, 64).sign()),
                               torch.full((4, 64), 1e300, dtype=torch.float64)], ids=["3e38-f32", "1e300-f64"])
def test_extreme_magnitudes_are_refused_clearly(method, W):
    module = {"rtn": rtn, "gptq": gptq, "awq": awq, "hqq": hqq, "nf4": nf4}[method]
    with pytest.raises(ValueError, match="cannot be quantized"):
        module.quantize_weight(W, torch.randn(32, 64), bits=4, group_size=32)


def test_large_but_allowed_magnitudes_stay_finite():
    W = torch.randn(4, 64) * 1e37
    for qw in (hqq.quantize_weight(W, group_size=32), nf4.quantize_weight(W, group_size=32, double_quant=True),
               rtn.quantize_weight(W, group_size=32)):
        assert bool(torch.isfinite(qw.dequantize()).all())


# ---- GPTQ's Hessian at any scale ----------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [1e-20, 1e-6, 1e6, 1e20])
def test_gptq_codes_do_not_depend_on_the_scale_of_x(factor):
    W, X = torch.randn(16, 64), ar1_inputs(256, 64)
    base = gptq.quantize_weight(W, X, bits=3, group_size=32)
    scaled = gptq.quantize_weight(W, X * factor, bits=3, group_size=32)
    assert (base.codes() != scaled.codes()).float().mean() < 0.01  # rounding ties at most


def test_gptq_says_what_is_wrong_with_too_few_tokens():
    W, X = torch.randn(8, 64), torch.randn(16, 64)  # rank 16 of 64
    with pytest.raises(ValueError, match="span only 16 of their 64 dimensions"):
        gptq.quantize_weight(W, X, group_size=32, damp=0.0)
    assert bool(torch.isfinite(gptq.quantize_weight(W, X, group_size=32, damp=0.01).dequantize()).all())


# ---- AWQLinear checks its input before using it ---------------------------------------------------------------

def test_awq_linear_checks_its_input_first():
    model = nn.Sequential(nn.Linear(64, 16), nn.GELU(), nn.Linear(16, 8))
    quantize_model(model, bits=4, granularity=PerGroup(16), method="awq", calibration=[torch.randn(32, 64)])
    layer = model[2]
    assert isinstance(layer, awq.AWQLinear)
    with pytest.raises(ValueError, match=r"\(\.\.\., 16\)"):
        layer(torch.randn(3, 15))
    with pytest.raises(ValueError, match=r"\(\.\.\., 16\)"):
        layer(torch.tensor(1.0))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(3, 16, dtype=torch.int64))


# ---- 16-bit models through every method -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("method,bits,granularity", [("rtn", 4, PerGroup(32)), ("gptq", 4, PerGroup(32)),
                                                     ("awq", 4, PerGroup(32)), ("hqq", 4, PerGroup(32)),
                                                     ("nf4", 4, PerGroup(32)), ("llm_int8", 8, None)])
def test_every_method_quantizes_a_16_bit_llama(dtype, method, bits, granularity):
    model = tiny_llama(dtype)
    ids = token_batches(1)[0]["input_ids"]
    with torch.no_grad():
        before = model(ids).logits.float()
    kwargs = {} if granularity is None else {"granularity": granularity}
    calibration = token_batches() if method in ("gptq", "awq") else None
    report = quantize_model(model, bits=bits, method=method, calibration=calibration, **kwargs)
    assert len(report.replaced) == 15  # 7 per block and the (untied) lm_head
    with torch.no_grad():
        after = model(ids).logits.float()
    assert bool(torch.isfinite(after).all())
    assert float((after - before).abs().max()) < 0.5 * float(before.abs().max())


# ---- a NaN in one layer names the layer; bad calibration is refused before any work ------------------------------

def test_nan_in_one_layer_names_it_and_restores_the_model():
    model = tiny_llama()
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] = float("nan")
    for method, calibration in (("rtn", None), ("gptq", token_batches()), ("hqq", None)):
        with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj.*NaN"):
            quantize_model(model, bits=4, granularity=PerGroup(32), method=method, calibration=calibration)
        assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("batches,error,match", [
    ([{"input_ids": torch.rand(2, 8)}], TypeError, "integer token ids"),
    ([{"input_ids": torch.full((2, 8), 500)}], ValueError, r"\[0, 96\)"),
    ([{"input_ids": torch.zeros(2, 0, dtype=torch.long)}], ValueError, "no tokens"),
    ([], ValueError, "empty"),
    (None, ValueError, "needs calibration data"),
], ids=["float-ids", "out-of-vocabulary", "empty-batch", "no-batches", "none"])
def test_calibration_batches_are_checked_against_the_model(batches, error, match):
    model = tiny_llama()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=match):
        quantize_model(model, bits=4, granularity=PerGroup(32), method="gptq", calibration=batches)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


# ---- messages that say what is true ----------------------------------------------------------------------------

def test_messages_say_what_is_true():
    with pytest.raises(TypeError, match="targets must be"):
        lora.add_lora(tiny_llama(), targets=3)
    with pytest.raises(ValueError, match="r=100 is larger than the layer"):
        lora.LoRALinear(nn.Linear(64, 8), r=100)
    with pytest.raises(TypeError, match="iterable of batches"):
        smoothquant.smooth_model(tiny_llama(), None)
    with pytest.raises(ValueError, match="W is empty"):
        llm_int8.Int8Weight.from_float(torch.randn(0, 4))
    with pytest.raises(ValueError, match="bits must be 4"):
        nf4.quantize_weight(torch.randn(8, 64), bits=3)
