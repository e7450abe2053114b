"""quantize_model and model_size_bytes: on nn.Sequential and MiniLM, all-or-nothing on bad input."""

import pytest
import torch
from torch import nn

from qlearn import PerChannel, PerGroup, QuantLinear, QuantMethod, model_size_bytes, quantize_model, register_method
from qlearn.core.primitives import choose_qparams


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def test_sequential_all_linears_replaced_and_outputs_close():
    model = _mlp()
    x = torch.randn(8, 64)
    with torch.no_grad():
        before = model(x)
        report = quantize_model(model, bits=8)
        after = model(x)
    assert report.replaced == ("0", "2", "4")
    assert all(isinstance(model[i], QuantLinear) for i in (0, 2, 4))
    assert float((after - before).norm() / before.norm()) < 0.02


def test_sizes_are_real_bytes():
    model = _mlp()
    weights = 64 * 128 + 128 * 128 + 128 * 10
    biases = 128 + 128 + 10
    assert model_size_bytes(model) == 4 * (weights + biases)
    report = quantize_model(model, bits=4, granularity=PerGroup(32), symmetric=False)
    groups = weights // 32
    expected = weights // 2 + groups * (4 + 1) + 4 * biases  # packed codes + fp32 scale + int8 zero point
    assert report.bytes_after == model_size_bytes(model) == expected
    assert report.bytes_before == 4 * (weights + biases)


def test_exclude_keeps_layers_in_float():
    model = _mlp()
    report = quantize_model(model, exclude=("4",))
    assert isinstance(model[4], nn.Linear) and report.replaced == ("0", "2")


def test_incompatible_group_size_fails_before_any_replacement():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 100), nn.Linear(100, 8))
    with pytest.raises(ValueError, match="'2'|2: "):
        quantize_model(model, bits=4, granularity=PerGroup(64))
    assert all(type(m) is nn.Linear for m in model)
    report = quantize_model(model, bits=4, granularity=PerGroup(32), skip_incompatible=True)
    assert report.replaced == ("0", "1") and set(report.skipped) == {"2"}


def test_unknown_method_and_registered_method():
    with pytest.raises(ValueError, match="unknown method"):
        quantize_model(_mlp(), method="gptq-typo")
    calls = []

    def spy_rtn(name, linear, X, bits, granularity, symmetric):
        calls.append(name)
        qparams = choose_qparams(linear.weight.detach(), bits=bits, symmetric=symmetric, granularity=granularity)
        return QuantLinear.from_linear(linear, qparams=qparams)

    register_method(QuantMethod("test-rtn", spy_rtn), replace=True)
    quantize_model(_mlp(), method="test-rtn")
    assert calls == ["0", "2", "4"]


@pytest.mark.parametrize("kwargs,err", [
    ({"bits": 1}, ValueError), ({"activations": 0}, ValueError), ({"exclude": ("no_such_layer",)}, ValueError),
    ({"exclude": 3}, TypeError), ({"granularity": "per-channel"}, TypeError), ({"kernel": "x"}, ValueError),
], ids=["bits-1", "activations-0", "exclude-typo", "exclude-int", "granularity-str", "kernel"])
def test_bad_arguments_leave_model_untouched(kwargs, err):
    model = _mlp()
    with pytest.raises(err):
        quantize_model(model, **kwargs)
    assert all(type(m) is not QuantLinear for m in model)


def test_bad_models():
    with pytest.raises(TypeError, match="from_linear"):
        quantize_model(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        quantize_model("model")
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="meta"):
        quantize_model(nn.Sequential(nn.Linear(4, 4, device="meta")))


def test_multihead_attention_out_proj_is_skipped():
    model = nn.Sequential(nn.MultiheadAttention(32, 4, batch_first=True))
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_model(model)


def test_minilm_quantized_embeddings_stay_close():
    from qlearn.core import metrics
    from qlearn.data.models import SENTENCES, embed, load_model

    model, tokenizer = load_model()
    reference = embed(model, tokenizer, SENTENCES[:4])
    linears = {name: m.weight.shape for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    report = quantize_model(model, bits=8, granularity=PerChannel())
    assert list(report.replaced) == list(linears) and len(linears) == 6 * 6 + 1  # 6 per block, and the pooler
    # each weight goes from 4 bytes to 1 byte per entry, plus a float32 scale and an int8 zero point per row
    saved = sum(3 * out * inp - 5 * out for out, inp in linears.values())
    assert report.bytes_before - report.bytes_after == saved
    assert metrics.cosine_similarity(reference, embed(model, tokenizer, SENTENCES[:4])) > 0.99


def test_model_size_counts_optimum_quanto_weights_as_int8():
    from optimum.quanto import freeze, qint8, quantize

    model = _mlp()
    quantize(model, weights=qint8)
    freeze(model)
    mine = _mlp()
    quantize_model(mine, bits=8, symmetric=True)
    # both store int8 codes and one float32 scale per row; qlearn adds an int8 zero point per row,
    # quanto two float32 scalars (input and output scale) per layer
    rows = 128 + 128 + 10
    assert model_size_bytes(mine) - model_size_bytes(model) == rows - 3 * 2 * 4


def test_model_size_rejects_non_modules():
    with pytest.raises(TypeError):
        model_size_bytes(torch.zeros(3))


def test_hugging_face_t5_generates_after_quantization():
    """A tiny random T5 (built from a config, nothing downloaded): T5 reads `.weight` of its layers."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    report = quantize_model(model, bits=8, exclude=("lm_head",))
    assert "lm_head" not in report.replaced and isinstance(model.lm_head, nn.Linear)
    assert any(name.endswith("DenseReluDense.wo") for name in report.replaced)
    out = model.generate(torch.tensor([[5, 6, 7, 1]]), max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] <= 5
