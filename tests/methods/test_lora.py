"""LoRA adapters: an oracle test against peft, the B = 0 start, frozen bases, merging, quantized bases, bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qlearn import PerGroup, quantize_model
from qlearn.inference.linear import QuantLinear
from qlearn.methods.lora import LoRALinear, add_lora, count_params, lora_parameters, merge_lora
from qlearn.methods.nf4 import NF4Linear

TARGETS = ("q_proj", "v_proj", "down_proj")


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(seed))


def randomize_B(model: nn.Module, seed: int = 2) -> None:
    """Give every B a nonzero value so the adapters change the output (a trained state)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(0.1 * torch.randn(m.lora_B.shape, generator=g))


def test_matches_peft_forward_and_gradients():
    from peft import LoraConfig, get_peft_model

    ours, _ = add_lora(tiny_llama(), r=4, alpha=8, targets=TARGETS)
    randomize_B(ours)
    theirs = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGETS),
                                                     lora_dropout=0.0))
    mine = {n: m for n, m in ours.named_modules() if isinstance(m, LoRALinear)}
    copied = 0
    with torch.no_grad():
        for name, module in theirs.named_modules():
            if hasattr(module, "lora_A") and isinstance(module.lora_A, nn.ModuleDict):
                key = name.removeprefix("base_model.model.")
                module.lora_A["default"].weight.copy_(mine[key].lora_A)
                module.lora_B["default"].weight.copy_(mine[key].lora_B)
                copied += 1
    assert copied == len(mine) == 6
    x = ids()
    loss_ours = ours(input_ids=x, labels=x).loss
    loss_theirs = theirs(input_ids=x, labels=x).loss
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=1e-5, atol=1e-6)
    loss_ours.backward()
    loss_theirs.backward()
    for name, module in theirs.named_modules():
        if hasattr(module, "lora_A") and isinstance(module.lora_A, nn.ModuleDict):
            key = name.removeprefix("base_model.model.")
            torch.testing.assert_close(mine[key].lora_A.grad, module.lora_A["default"].weight.grad,
                                       rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(mine[key].lora_B.grad, module.lora_B["default"].weight.grad,
                                       rtol=1e-4, atol=1e-6)
    trainable_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert trainable_theirs == sum(p.numel() for p in lora_parameters(ours))


def test_starts_at_the_base_model_and_only_adapters_get_gradients():
    base = tiny_llama()
    x = ids()
    with torch.no_grad():
        before = base(input_ids=x).logits
    model, report = add_lora(base, r=2, alpha=4, targets="*proj")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, before, rtol=0, atol=0)
    assert report.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    model(input_ids=x, labels=x).loss.backward()
    adapters = {id(p) for p in lora_parameters(model)}
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (id(p) in adapters), name
    assert report.optimizer_bytes == 2 * report.adapter_bytes == 2 * 4 * report.trainable_params
    assert len(report.wrapped) == 2 * 7


def test_merge_gives_the_adapted_output():
    model, _ = add_lora(tiny_llama(), r=4, alpha=16, targets=TARGETS)
    randomize_B(model)
    x = ids()
    with torch.no_grad():
        adapted = model(input_ids=x).logits
        merge_lora(model)
        merged = model(input_ids=x).logits
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert not torch.allclose(adapted, tiny_llama()(input_ids=x).logits, atol=1e-3)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)


def quant_bases():
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    return {"nf4": NF4Linear.from_linear(linear, block_size=32), "nf4-dq": NF4Linear.from_linear(linear, 32, True),
            "int8": QuantLinear.from_linear(linear, bits=8), "int4": QuantLinear.from_linear(linear, bits=4)}


@pytest.mark.parametrize("kind", ["nf4", "nf4-dq", "int8", "int4"])
def test_quantized_base_trains_adapters_only(kind):
    base = quant_bases()[kind]
    layer = LoRALinear(base, r=4, alpha=8)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)
        layer.lora_B.normal_(0, 0.1)
    layer(x).square().sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_A.grad.abs().sum() > 0
    assert layer.lora_B.grad is not None and layer.lora_B.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in base.parameters())
    with torch.no_grad():  # merging a quantized base gives the float W_hat + (alpha / r) B A
        exact = base.reference_forward(x) if isinstance(base, QuantLinear) else base(x)  # no fused int8 kernel
        torch.testing.assert_close(layer.merged()(x), exact + layer(x) - base(x), rtol=1e-4, atol=1e-5)


def test_nf4_model_with_lora_report():
    model = tiny_llama()
    n_float = count_params(model)
    replaced = quantize_model(model, bits=4, method="nf4", granularity=PerGroup(32)).replaced
    assert "lm_head" not in replaced and len(replaced) == 14  # tied lm_head stays in float
    assert count_params(model) == n_float
    model, report = add_lora(model, r=2, alpha=4, targets=TARGETS)
    assert report.total_params == n_float + report.trainable_params
    assert 0 < report.trainable_share < 0.1
    x = ids()
    model(input_ids=x, labels=x).loss.backward()
    assert all(p.grad is not None for p in lora_parameters(model))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"r": 0}, ValueError, "r must be a positive int"),
    ({"r": 2.0}, ValueError, "r must be a positive int"),
    ({"r": True}, ValueError, "r must be a positive int"),
    ({"alpha": 0}, ValueError, "alpha must be > 0"),
    ({"alpha": "16"}, TypeError, "alpha must be a number"),
    ({"targets": ("nope",)}, ValueError, "matches no module.*some module names"),
    ({"targets": ("mlp",)}, TypeError, "not a linear layer"),
    ({"targets": ()}, ValueError, "targets is empty"),
    ({"targets": (3,)}, TypeError, "targets must be a module name or glob pattern"),
    ({"dropout": 1.0}, ValueError, "dropout must be below 1"),
    ({"dropout": -0.1}, ValueError, "dropout must be >= 0"),
], ids=["r0", "r-float", "r-bool", "alpha0", "alpha-str", "no-match", "non-linear", "empty", "target-int",
        "dropout1", "dropout-neg"])
def test_bad_inputs(kwargs, error, match):
    with pytest.raises(error, match=match):
        add_lora(tiny_llama(), **{"targets": TARGETS, **kwargs})


def test_bad_models():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        add_lora("model")
    with pytest.raises(TypeError, match="for one layer"):
        add_lora(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="LoRA wraps a linear layer"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    model, _ = add_lora(tiny_llama(), targets=TARGETS)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        add_lora(model, targets=TARGETS)
    with pytest.raises(ValueError, match="no LoRA adapters to merge"):
        merge_lora(tiny_llama())
    with pytest.raises(ValueError, match="no LoRA adapters"):
        lora_parameters(tiny_llama())
