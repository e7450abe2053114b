"""Every public function and class of qlearn, fed a standard set of bad arguments, refuses them clearly.

Public names of a module: its `__all__`, else every function or class defined in it whose name does not start
with "_". Every module under qlearn/ is walked except the teaching face (plots, widgets, exercises, teaching) and
data (loaders of shipped files).

CALLS maps each public callable to one VALID example call (keyword arguments built from fresh small fixtures); a
callable with no entry must be in SKIP with a reason, so a new public function without an entry fails
`test_every_public_callable_has_an_entry`. Each entry's arguments are then replaced, one at a time, by the bad
values of the argument's kind (chosen from the valid value's type):

    tensor   nan, inf, -inf, empty, wrong ndim, integer dtype, bool, float64 holding 1e300, a list, None, a string,
             and two magnitudes the issue found: float16 holding 65504, float32 holding -3e38
    int tensor (token ids, codes)  empty, wrong ndim, float dtype, a list, None, a string
    int      0, -1, 2.5, True, None, "3", 10**9 (where the entry names the argument a size)
    float    nan, inf, -inf, -1.0, "x", None, True
    bool     1, None, "yes"
    str      "nope", None, 3
    module   None, a string, an nn.Linear where a model is expected
    other    None, "nope", 3   (granularities, QParams, lists of names, dtypes, callables, ...)

The contract of each case: the call raises ValueError or TypeError, never another exception, never a hang (a
per-call time budget). A value that is LENIENT (an empty or wrong-ndim tensor, the three large magnitudes, 10**9, an
nn.Linear as the model, the signature's default, a value the entry declares acceptable in `accepts`) may instead
return, and then every
tensor in the result (recursively: tuples, dicts, dataclasses, modules' parameters and buffers, a quantized
weight's dequantize(), a generator's items, a context manager's value) is finite. Every other value is wrong (its
type, its finiteness, its range) and must be refused: returning is a silent wrong acceptance. ALLOWED lists the few
cases where another exception is right (with the reason); OWNED the cases left, as strict xfails, to the engineers
who own those files now.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import inspect
import math
import pkgutil
import shutil
import signal
import tempfile
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import qlearn
from qlearn import PerChannel, PerGroup, PerTensor, PerToken, choose_qparams, quantize, quantize_model
from qlearn.compression import prune, sparse
from qlearn.core import dtypes
from qlearn.data.digits import Digits
from qlearn.inference import block_inputs, capture, packing, registry, serialize, targets
from qlearn.inference.linear import QuantLinear
from qlearn.methods import (
    awq,
    block_float,
    distill_llm,
    folding,
    fp8,
    ggml_quants,
    gguf_export,
    gptq,
    hadamard_mx,
    hqq,
    kv_cache,
    kv_eval,
    llama_cpp,
    llm_int8,
    lora,
    mixed_precision,
    mx,
    nf4,
    pruning,
    rotation,
    rtn,
    smoothquant,
    sparsegpt,
    wanda,
    weight,
)
from qlearn.training import lsq, qat

SKIPPED_PACKAGES = ("qlearn.plots", "qlearn.widgets", "qlearn.exercises", "qlearn.teaching", "qlearn.data")
TIME_BUDGET_S = 5.0  # per call: a hang is a failure, not a stuck suite


# --------------------------------------------------------------------------------------------------- the walk
def public_modules():
    """Every qlearn module that the fuzz walks (the package itself included)."""
    names = ["qlearn"] + [m.name for m in pkgutil.walk_packages(qlearn.__path__, "qlearn.")]
    return [importlib.import_module(n) for n in names if not n.startswith(SKIPPED_PACKAGES)]


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [k for k, v in vars(module).items() if not k.startswith("_") and (inspect.isfunction(v) or
            inspect.isclass(v)) and v.__module__ == module.__name__]


def key_of(obj) -> str:
    """"gptq.quantize_weight": the defining module's last part and the qualified name."""
    return f"{obj.__module__.rsplit('.', 1)[-1]}.{obj.__qualname__}"


def public_callables() -> dict[str, object]:
    found = {}
    for module in public_modules():
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj) or isinstance(obj, torch.dtype):
                continue
            found[key_of(obj)] = obj
    return found


# --------------------------------------------------------------------------------------------------- fixtures
def W() -> torch.Tensor:
    """A seeded weight (16, 64) float32."""
    return torch.randn(16, 64, generator=torch.Generator().manual_seed(0))


def W2() -> torch.Tensor:
    return W() + 0.01 * torch.randn(16, 64, generator=torch.Generator().manual_seed(1))


def X() -> torch.Tensor:
    """Seeded calibration inputs (32, 64) float32."""
    return torch.randn(32, 64, generator=torch.Generator().manual_seed(2))


def logits() -> torch.Tensor:
    return torch.randn(8, 10, generator=torch.Generator().manual_seed(3))


def mlp() -> nn.Sequential:
    """A tiny Sequential of Linears: 64 -> 32 -> 16."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))


def digits_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def digits() -> Digits:
    g = torch.Generator().manual_seed(4)
    return Digits(torch.rand(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g),
                  torch.rand(32, 64, generator=g), torch.randint(0, 10, (32,), generator=g))


_LLAMA = []


def llama() -> nn.Module:
    """A tiny random Llama (hidden 32, 2 layers, vocab 64), a fresh copy each call."""
    if not _LLAMA:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        _LLAMA.append(LlamaForCausalLM(config).eval())
    return copy.deepcopy(_LLAMA[0])


def ids() -> torch.Tensor:
    """A batch of token ids (2, 8) int64 in [0, 64)."""
    return torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(5))


def llama_linears() -> list[str]:
    return [n for n, m in llama().named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]


LAYER0 = "model.layers.0"
QKV = [f"{LAYER0}.self_attn.{p}_proj" for p in "qkv"]
TEXT = "the quick brown fox jumps over the lazy dog. " * 6


def tokenizer(text, return_tensors="pt"):
    """A stand-in byte tokenizer for the tiny Llama (vocab 64): ids = bytes mod 64."""
    return {"input_ids": torch.tensor([[b % 64 for b in text.encode()]])}


def qp():
    """QParams of W, 4 bits, one scale per row."""
    return choose_qparams(W(), bits=4, granularity=PerChannel(0))


def codes() -> torch.Tensor:
    return torch.randint(-8, 8, (64,), dtype=torch.int8, generator=torch.Generator().manual_seed(6))


def int8_codes(rows: int) -> torch.Tensor:
    return torch.randint(-127, 128, (rows, 64), dtype=torch.int8, generator=torch.Generator().manual_seed(rows))


def quant_linear() -> QuantLinear:
    torch.manual_seed(0)
    return QuantLinear.from_linear(nn.Linear(64, 16), bits=8)


def quantized_mlp() -> nn.Module:
    model = mlp()
    quantize_model(model, bits=8)
    return model


def static_mlp() -> nn.Module:
    model = mlp()
    quantize_model(model, bits=8, activations=8, activation_granularity=PerTensor())
    return model


def pruned_mlp() -> nn.Module:
    model = mlp()
    prune.prune_model(model, 0.5)
    return model


def quantized_llama() -> nn.Module:
    """The tiny Llama with 8-bit weights: a model a little off the reference."""
    model = llama()
    quantize_model(model, bits=8, exclude=["lm_head"])
    return model


def mx_codes() -> torch.Tensor:
    """FP6 element codes (16, 64) uint8 in [0, 64)."""
    return torch.randint(0, 64, (16, 64), generator=torch.Generator().manual_seed(7)).to(torch.uint8)


def lora_llama() -> nn.Module:
    return lora.add_lora(llama(), r=4, alpha=8.0)[0]


def pruned_llama() -> nn.Module:
    model = llama()
    pruning.prune_model(model, method="magnitude", pattern="2:4")
    return model


def qat_mlp() -> nn.Module:
    return qat.prepare_qat(mlp())


_TMP = Path(tempfile.mkdtemp(prefix="qlearn-fuzz-"))


def saved_file() -> str:
    path = _TMP / "mlp.safetensors"
    if not path.exists():
        serialize.save_quantized(quantized_mlp(), path)
    return str(path)


def fuzz_method() -> registry.QuantMethod:
    return registry.QuantMethod("fuzz_rtn", registry.get_method("rtn").quantize_layer)


# --------------------------------------------------------------------------------------------------- the table
SEEDS = ["0", "-1"]  # torch takes any int seed
META_BITS = {"scale_bits": ["0"], "zero_point_bits": ["0"]}  # documented: 0 for metadata not stored
GROUP_NONE = {"group_size": ["None"]}  # None: one scale per output row
ACT_BITS = {"activations": ["3"]}  # activations are None or the bits of the activation codes (3 is valid)
NON_FINITE_IDS = ["nan", "inf", "-inf"]
ANY_VALUES = NON_FINITE_IDS + ["int", "bool"]
DATA_FREE = {"X": ["None"]}  # a data-free method's hook takes X=None
SAVE_PATHS = [("None", lambda v: None, False), ("3", lambda v: 3, False), ("dir", lambda v: str(_TMP), False),
              ("missing_dir", lambda v: str(_TMP / "absent" / "x.safetensors"), False)]
LOAD_PATHS = [("None", lambda v: None, False), ("3", lambda v: 3, False), ("dir", lambda v: str(_TMP), False),
              ("missing", lambda v: str(_TMP / "absent.safetensors"), False)]


@dataclasses.dataclass
class Entry:
    """One valid call: fn(**make()). `sizes`: int arguments that also get 10**9; `fixed`: arguments not fuzzed
    (message labels, internal hooks); `accepts`: {argument: ids of bad values that are valid for it}."""

    fn: object
    make: object
    sizes: tuple = ()
    fixed: tuple = ()
    accepts: dict = dataclasses.field(default_factory=dict)
    values: dict = dataclasses.field(default_factory=dict)


def E(fn, make=dict, sizes=(), fixed=(), accepts=None, values=None):
    return Entry(fn, make, tuple(sizes), tuple(fixed), accepts or {}, values or {})


def qlayer_args(**more):
    """The arguments of a method's quantize_layer hook (as quantize_model calls it)."""
    return lambda: dict(name="0", linear=nn.Linear(64, 16), X=X(), bits=4, granularity=PerGroup(16),
                        symmetric=False, **more)


CALLS: dict[str, Entry] = {
    # compression
    "distill.soft_target_loss": E(qlearn.compression.distill.soft_target_loss, lambda: dict(
        student_logits=logits(), teacher_logits=logits().flip(0), T=4.0, scale_by_T2=True)),
    "distill.distillation_loss": E(qlearn.compression.distill.distillation_loss, lambda: dict(
        student_logits=logits(), teacher_logits=logits().flip(0), y=torch.arange(8), T=4.0, alpha=0.9)),
    "distill.distill": E(qlearn.compression.distill.distill, lambda: dict(
        student=digits_mlp(), teacher=digits_mlp(), data=digits(), T=4.0, alpha=0.9, epochs=1, lr=1e-3,
        batch_size=32, seed=1, progress=False), sizes=["batch_size"], accepts={"seed": SEEDS}),
    "prune.check_sparsity": E(prune.check_sparsity, lambda: dict(sparsity=0.5, name="s"), fixed=["name"],
                              accepts={"sparsity": []}),
    "prune.magnitude_mask": E(prune.magnitude_mask, lambda: dict(W=W(), sparsity=0.5)),
    "prune.magnitude_prune": E(prune.magnitude_prune, lambda: dict(W=W(), sparsity=0.5)),
    "prune.global_magnitude_masks": E(prune.global_magnitude_masks, lambda: dict(
        weights={"a": W(), "b": W2()}, sparsity=0.5)),
    "prune.prunable_layers": E(prune.prunable_layers, lambda: dict(model=mlp(), layers=["0"])),
    "prune.prune_model": E(prune.prune_model, lambda: dict(model=mlp(), sparsity=0.5, layers=None, scope="layer")),
    "prune.remove_masks": E(prune.remove_masks, lambda: dict(model=pruned_mlp())),
    "prune.weight_sparsity": E(prune.weight_sparsity, lambda: dict(model=pruned_mlp(), layers=["0"])),
    "schedules.sparsity_schedule": E(qlearn.compression.schedules.sparsity_schedule, lambda: dict(
        step=2, final_sparsity=0.8, n_steps=5, initial_sparsity=0.1, start_step=1),
        accepts={"step": ["0"], "start_step": ["0"], "initial_sparsity": []}),
    "schedules.gradual_prune": E(qlearn.compression.schedules.gradual_prune, lambda: dict(
        model=digits_mlp(), data=digits(), final_sparsity=0.5, n_steps=1, epochs_per_step=1, layers=None,
        scope="global", lr=1e-3, seed=1, progress=False), accepts={"seed": SEEDS}),
    "schedules.sensitivity_scan": E(qlearn.compression.schedules.sensitivity_scan, lambda: dict(
        model=mlp(), sparsities=[0.0, 0.5], evaluate=lambda m: float(m[0].weight.abs().sum()), layers=None,
        progress=False)),
    "structured.unit_scores": E(qlearn.compression.structured.unit_scores, lambda: dict(W=W(), p=2.0)),
    "structured.units_to_keep": E(qlearn.compression.structured.units_to_keep, lambda: dict(
        W=W(), sparsity=0.5, p=2.0)),
    "structured.prune_units": E(qlearn.compression.structured.prune_units, lambda: dict(
        model=mlp(), pairs=[("0", "2")], sparsity=0.5, p=2.0)),
    # core
    "bits.metadata_bits": E(qlearn.core.bits.metadata_bits, lambda: dict(
        shape=(16, 64), granularity=PerGroup(16), symmetric=False, scale_bits=32, zero_point_bits=8),
        accepts=META_BITS),
    "bits.effective_bits": E(qlearn.core.bits.effective_bits, lambda: dict(
        shape=(16, 64), bits=4, granularity=PerGroup(16), symmetric=False, scale_bits=16, zero_point_bits=8),
        accepts=META_BITS),
    "bits.storage_bytes": E(qlearn.core.bits.storage_bytes, lambda: dict(
        shape=(16, 64), bits=4, granularity=PerGroup(16), symmetric=False, scale_bits=16, zero_point_bits=8),
        accepts=META_BITS),
    "dtypes.float_info": E(dtypes.float_info, lambda: dict(dtype=torch.float16)),
    "dtypes.bit_layout": E(dtypes.bit_layout, lambda: dict(value=0.1, dtype=torch.bfloat16),
                           accepts={"value": ["nan", "inf", "-inf", "-1.0"]}),
    "dtypes.model_memory_bytes": E(dtypes.model_memory_bytes, lambda: dict(model=mlp(), dtype=torch.float16)),
    "dtypes.cast_model": E(dtypes.cast_model, lambda: dict(model=mlp(), dtype=torch.float16)),
    "granularity.PerTensor": E(qlearn.PerTensor),
    "granularity.PerChannel": E(qlearn.PerChannel, lambda: dict(axis=1), accepts={"axis": ["0", "-1"]}),
    "granularity.PerGroup": E(qlearn.PerGroup, lambda: dict(group_size=16), sizes=["group_size"]),
    "granularity.PerToken": E(qlearn.PerToken),
    "granularity.check_granularity": E(qlearn.core.granularity.check_granularity, lambda: dict(
        granularity=PerGroup(16))),
    "metrics.mse": E(qlearn.core.metrics.mse, lambda: dict(x=W(), x_hat=W2())),
    "metrics.max_abs_error": E(qlearn.core.metrics.max_abs_error, lambda: dict(x=W(), x_hat=W2())),
    "metrics.sqnr_db": E(qlearn.core.metrics.sqnr_db, lambda: dict(x=W(), x_hat=W2())),
    "metrics.cosine_similarity": E(qlearn.core.metrics.cosine_similarity, lambda: dict(x=W(), x_hat=W2())),
    "metrics.perplexity": E(qlearn.core.metrics.perplexity, lambda: dict(
        model=llama(), tokenizer=tokenizer, text=TEXT, window=32, stride=16, progress=False),
        sizes=["window", "stride"], accepts={"text": ["nope"]}),
    "metrics.kl_divergence": E(qlearn.core.metrics.kl_divergence, lambda: dict(
        reference=llama(), model=quantized_llama(), tokenizer=tokenizer, text=TEXT, window=32, progress=False),
        sizes=["window"], accepts={"text": ["nope"]}),  # "nope" is a text: four tokens
    "metrics.top1_agreement": E(qlearn.core.metrics.top1_agreement, lambda: dict(
        reference=llama(), model=quantized_llama(), tokenizer=tokenizer, text=TEXT, window=32, progress=False),
        sizes=["window"], accepts={"text": ["nope"]}),
    "lm_compare.LMReference": E(qlearn.core.lm_compare.LMReference, lambda: dict(
        reference=llama(), tokenizer=tokenizer, text=TEXT, window=32), sizes=["window"], accepts={"text": ["nope"]}),
    "modules.replace_module": E(qlearn.core.modules.replace_module, lambda: dict(
        model=mlp(), name="0", module=nn.Linear(64, 32))),
    "primitives.qrange": E(qlearn.qrange, lambda: dict(bits=4)),
    "primitives.QParams": E(qlearn.QParams, lambda: dict(
        scale=qp().scale, zero_point=qp().zero_point, bits=4, symmetric=False, qmin=-8, qmax=7,
        granularity=PerChannel(0), dtype=torch.float32)),
    "primitives.choose_qparams": E(qlearn.choose_qparams, lambda: dict(
        x=W(), bits=4, symmetric=False, granularity=PerChannel(0), restricted=True)),
    "primitives.minmax_params": E(qlearn.core.primitives.minmax_params, lambda: dict(
        xb=W(), dims=(1,), bits=4, symmetric=False, restricted=True),
        accepts={"xb": NON_FINITE_IDS}),  # documented: it leaves the NaN / inf scan to choose_qparams
    "primitives.quantize": E(qlearn.quantize, lambda: dict(x=W(), qparams=qp())),
    "primitives.dequantize": E(qlearn.dequantize, lambda: dict(q=quantize(W(), qp()), qparams=qp())),
    "primitives.cast_finite": E(qlearn.core.primitives.cast_finite, lambda: dict(r=W(), dtype=torch.float16),
                                accepts={"r": NON_FINITE_IDS}),  # clamps inf to the dtype's range, NaN stays NaN
    "primitives.fake_quantize": E(qlearn.fake_quantize, lambda: dict(
        x=W(), bits=4, symmetric=False, granularity=PerChannel(0), qparams=None)),
    "quiet.silence_torchao_import_noise": E(qlearn.core.quiet.silence_torchao_import_noise),
    "quiet.silence_known_import_noise": E(qlearn.core.quiet.silence_known_import_noise),
    "memory.free_memory": E(qlearn.core.memory.free_memory),
    "validation.check_bits": E(qlearn.core.validation.check_bits, lambda: dict(bits=4, name="bits"),
                               fixed=["name"]),
    "validation.check_bool": E(qlearn.core.validation.check_bool, lambda: dict(value=True, name="flag"),
                               fixed=["name"]),
    "validation.check_choice": E(qlearn.core.validation.check_choice, lambda: dict(
        value="a", name="c", choices=("a", "b")), fixed=["name", "choices"]),
    "validation.check_float_tensor": E(qlearn.core.validation.check_float_tensor, lambda: dict(x=W(), name="x"),
                                       fixed=["name"]),
    "validation.check_group_size": E(qlearn.core.validation.check_group_size, lambda: dict(
        group_size=16, in_features=64), fixed=["in_features"], sizes=["group_size"], accepts=GROUP_NONE),
    "validation.check_inputs": E(qlearn.core.validation.check_inputs, lambda: dict(
        X=X(), W=W(), required=True, method="gptq"), fixed=["W", "required", "method"]),
    "validation.check_codes": E(qlearn.core.validation.check_codes, lambda: dict(codes=mx_codes(), name="c", high=63),
                                fixed=["name", "high"]),
    "validation.check_float_dtype": E(qlearn.core.validation.check_float_dtype, lambda: dict(dtype=torch.float16)),
    "validation.check_names": E(qlearn.core.validation.check_names, lambda: dict(names=["0", "2"], model=mlp()),
                                fixed=["model"]),
    "validation.check_module": E(qlearn.core.validation.check_module, lambda: dict(model=mlp())),
    "validation.check_number": E(qlearn.core.validation.check_number, lambda: dict(value=0.5, name="v", low=0.0),
                                 fixed=["name", "low"]),
    "validation.check_positive_int": E(qlearn.core.validation.check_positive_int, lambda: dict(
        value=3, name="n"), fixed=["name"]),
    "validation.check_same_shape": E(qlearn.core.validation.check_same_shape, lambda: dict(a=W(), b=W2()),
                                     accepts={"a": ["nan", "inf", "-inf", "int", "bool", "f64"],
                                              "b": ["nan", "inf", "-inf", "int", "bool", "f64"]}),
    "validation.check_weight": E(qlearn.core.validation.check_weight, lambda: dict(W=W(), name="W"),
                                 fixed=["name"]),
    # inference
    "block_inputs.BlockInputs": E(block_inputs.BlockInputs, lambda: dict(
        model=llama(), chain=None, batches=[ids()]) | _chain()),
    "block_inputs.block_chain": E(block_inputs.block_chain, lambda: dict(
        model=llama(), groups=targets.blocks(llama_linears()))),
    "block_inputs.calibration_blocks": E(block_inputs.calibration_blocks, lambda: dict(
        model=llama(), names=llama_linears(), batches=[ids()])),
    "capture.first_tensor": E(capture.first_tensor, lambda: dict(value=X(), what="x"), fixed=["what"],
                              accepts={"value": ["nan", "inf", "-inf", "int", "bool"]}),
    "capture.run_batch": E(capture.run_batch, lambda: dict(model=mlp(), batch=X()), accepts={"batch": "*"}),
    "capture.check_batches": E(capture.check_batches, lambda: dict(calibration=[X()], what="calibration",
                                                                    model=None), fixed=["what"]),
    "capture.attention_mask": E(capture.attention_mask, lambda: dict(
        batch={"input_ids": ids(), "attention_mask": torch.ones(2, 8, dtype=torch.long)})),
    "capture.capture_inputs": E(capture.capture_inputs, lambda: dict(
        model=mlp(), names=["0"], batches=[X()], progress=False), fixed=["run", "masks"]),
    # memory layout of any tensor: its values and dtype do not matter
    "kernels.is_aligned": E(qlearn.inference.kernels.is_aligned, lambda: dict(t=W()), accepts={"t": ANY_VALUES}),
    "kernels.aligned": E(qlearn.inference.kernels.aligned, lambda: dict(t=W()), accepts={"t": ANY_VALUES}),
    # a dispatch decision reads x's dtype, device and shape, never its values
    "kernels.select_name": E(qlearn.inference.kernels.select_name, lambda: dict(layer=quant_linear(), x=X()),
                             accepts={"x": NON_FINITE_IDS}),
    "kernels.select": E(qlearn.inference.kernels.select, lambda: dict(layer=quant_linear(), x=X()),
                        accepts={"x": NON_FINITE_IDS}),
    "kernels.choose": E(qlearn.inference.kernels.choose, lambda: dict(layer=quant_linear(), x=X()),
                        accepts={"x": NON_FINITE_IDS}),
    "kernels.int_mm_is_exact": E(qlearn.inference.kernels.int_mm_is_exact, lambda: dict(device_type="cpu")),
    "linear.check_weight_granularity": E(qlearn.inference.linear.check_weight_granularity, lambda: dict(
        granularity=PerGroup(16), shape=(16, 64))),
    "linear.check_activations": E(qlearn.inference.linear.check_activations, lambda: dict(
        activations=8, activation_granularity=PerToken()), accepts={"activations": ["None"]}),
    "linear.QuantLinear": E(QuantLinear, lambda: dict(
        in_features=64, out_features=16, bits=4, granularity=PerGroup(16), symmetric=False, bias=True,
        kernel="auto", activations=8, activation_granularity=PerToken(), smooth_input=False,
        dtype=torch.float32)),
    "packing.container_bits": E(packing.container_bits, lambda: dict(bits=4)),
    "packing.packed_length": E(packing.packed_length, lambda: dict(n=64, bits=4), accepts={"n": ["0"]}),
    "packing.pack": E(packing.pack, lambda: dict(q=codes(), bits=4)),
    "packing.unpack": E(packing.unpack, lambda: dict(packed=packing.pack(codes(), 4), bits=4, n=64)),
    "quantize_model.model_size_bytes": E(qlearn.model_size_bytes, lambda: dict(model=mlp())),
    "quantize_model.quantize_model": E(qlearn.quantize_model, lambda: dict(
        model=mlp(), bits=4, granularity=PerGroup(16), activations=None, exclude=("2",), method="rtn",
        calibration=None, progress=False, symmetric=False, kernel="auto", skip_incompatible=False,
        quantize_tied=False, activation_granularity=PerToken()), accepts=ACT_BITS),
    "quantize_model.quantize_model[gptq]": E(qlearn.quantize_model, lambda: dict(
        model=llama(), bits=4, granularity=PerGroup(16), method="gptq", calibration=[ids()], exclude="lm_head"),
        accepts={"exclude": ["None"]}),
    "registry.QuantMethod": E(registry.QuantMethod, lambda: dict(
        name="fuzz_rtn", quantize_layer=registry.get_method("rtn").quantize_layer, needs_calibration=False,
        sequential=False, bits=(4, 8), symmetric=(True,), granularities=(PerGroup,), description="a copy"),
        accepts={"name": ["nope"], "description": ["nope"]}),
    "registry.register_method": E(registry.register_method, lambda: dict(method=fuzz_method(), replace=True)),
    "registry.get_method": E(registry.get_method, lambda: dict(name="gptq")),
    "serialize.register_layer_type": E(serialize.register_layer_type, lambda: dict(cls=QuantLinear)),
    "serialize.layer_config": E(serialize.layer_config, lambda: dict(layer=quant_linear())),
    "serialize.layer_from_config": E(serialize.layer_from_config, lambda: dict(
        entry=serialize.layer_config(quant_linear()), kernel="auto")),
    "serialize.granularity_to_dict": E(serialize.granularity_to_dict, lambda: dict(granularity=PerGroup(16))),
    "serialize.granularity_from_dict": E(serialize.granularity_from_dict, lambda: dict(
        d=serialize.granularity_to_dict(PerGroup(16)))),
    "serialize.save_quantized": E(serialize.save_quantized, lambda: dict(
        model=quantized_mlp(), path=str(_TMP / "out.safetensors")), values={"path": SAVE_PATHS}),
    "serialize.load_quantized": E(serialize.load_quantized, lambda: dict(
        skeleton=mlp(), path=saved_file(), kernel="auto"), values={"path": LOAD_PATHS}),
    "targets.exclude_patterns": E(targets.exclude_patterns, lambda: dict(exclude=["lm_head"], name="exclude"),
                                  fixed=["name"], accepts={"exclude": ["nope"]}),
    "targets.matches": E(targets.matches, lambda: dict(name="model.layers.0.self_attn.q_proj", pattern="q_proj"),
                         accepts={"name": ["nope"], "pattern": ["nope"]}),
    "targets.select_targets": E(targets.select_targets, lambda: dict(
        model=mlp(), granularity=PerGroup(16), exclude=(), skip_incompatible=False, quantize_tied=False)),
    "targets.block_prefix": E(targets.block_prefix, lambda: dict(name="model.layers.7.mlp.up_proj"),
                              accepts={"name": ["nope"]}),
    "targets.blocks": E(targets.blocks, lambda: dict(names=llama_linears())),
    # methods
    "awq.AWQLinear": E(awq.AWQLinear, lambda: dict(in_features=64, out_features=16, bits=4,
                                                     granularity=PerGroup(16), symmetric=False)),
    "awq.output_mse": E(awq.output_mse, lambda: dict(X=X(), W=W(), W_hat=W2())),
    "awq.prepare": E(awq.prepare, lambda: dict(
        model=llama(), batches=[ids()], layer_names=llama_linears(), bits=4, granularity=PerGroup(16),
        symmetric=False, pairs=None, n_grid=4)),
    "awq.quantize_layer": E(awq.quantize_layer, qlayer_args(n_grid=4, clip=True, state=None, activations=None,
                                                            kernel="auto"), fixed=["name"], accepts=ACT_BITS),
    "awq.quantize_weight": E(awq.quantize_weight, lambda: dict(
        W=W(), X=X(), bits=4, group_size=16, n_grid=4, clip=True, symmetric=False), sizes=["group_size"],
        accepts=GROUP_NONE),
    "finetune_memory.nf4_bits_per_weight": E(qlearn.methods.finetune_memory.nf4_bits_per_weight, lambda: dict(
        block_size=64, double_quant=True, block_size2=256)),
    "finetune_memory.decoder_linear_shapes": E(qlearn.methods.finetune_memory.decoder_linear_shapes, lambda: dict(
        hidden=32, intermediate=64, layers=2, kv_dim=16)),
    "finetune_memory.lora_params": E(qlearn.methods.finetune_memory.lora_params, lambda: dict(
        shapes=[(32, 32), (64, 32)], r=8)),
    "finetune_memory.finetune_bytes": E(qlearn.methods.finetune_memory.finetune_bytes, lambda: dict(
        n_params=1000, n_quantized=800, n_adapter=10, recipe="QLoRA (NF4 + DQ base)"),
        accepts={"n_quantized": ["0"], "n_adapter": ["0"]}),
    "folding.check_pairs": E(folding.check_pairs, lambda: dict(
        model=llama(), pairs=[(f"{LAYER0}.input_layernorm", QKV)], allow_none=False, targets=None)),
    "folding.check_unchanged": E(folding.check_unchanged, lambda: dict(
        reference=X(), output=X(), dtype=torch.float32, what="folding"), fixed=["what"]),
    "folding.default_pairs": E(folding.default_pairs, lambda: dict(model=llama())),
    "folding.find_pairs": E(folding.find_pairs, lambda: dict(model=llama(), layer_names=QKV)),
    "folding.fold": E(folding.fold, lambda: dict(
        model=llama(), previous=f"{LAYER0}.input_layernorm", layers=QKV, s=torch.full((32,), 1.5), state=None)),
    "folding.model_output": E(folding.model_output, lambda: dict(value=(X(), None)),
                              accepts={"value": ["nan", "inf", "-inf", "int", "bool"]}),
    "gptq.hessian": E(gptq.hessian, lambda: dict(X=X())),
    "gptq.inverse_hessian_factor": E(gptq.inverse_hessian_factor, lambda: dict(H=gptq.hessian(X()), damp=0.01),
                                     accepts={"damp": []}),
    "gptq.quantize_layer": E(gptq.quantize_layer, qlayer_args(act_order=False, damp=0.01, block_size=16,
                                                              grid="minmax", activations=None, kernel="auto"),
                             fixed=["name"], sizes=["block_size"], accepts=ACT_BITS),
    "gptq.quantize_weight": E(gptq.quantize_weight, lambda: dict(
        W=W(), X=X(), bits=4, group_size=16, act_order=False, damp=0.01, block_size=16, symmetric=False,
        progress=False, grid="minmax"), sizes=["group_size", "block_size"], accepts=GROUP_NONE),
    "gptq.shrink_params": E(gptq.shrink_params, lambda: dict(
        w=W(), bits=4, symmetric=False, norm=2.4, grid=20, max_shrink=0.8, coarse=5)),
    "hqq.HQQLinear": E(hqq.HQQLinear, lambda: dict(
        in_features=64, out_features=16, bits=4, granularity=PerGroup(16), bias=True, dtype=torch.float32)),
    "hqq.quantize_layer": E(hqq.quantize_layer, qlayer_args(iters=3, lp_norm=0.7, beta=10.0, kappa=1.01,
                                                            early_stop=True), fixed=["name"], accepts=DATA_FREE),
    "hqq.quantize_weight": E(hqq.quantize_weight, lambda: dict(
        W=W(), X=None, bits=4, group_size=16, iters=3, lp_norm=0.7, beta=10.0, kappa=1.01, early_stop=True),
        sizes=["group_size"], accepts=GROUP_NONE),
    "hqq.shrink_lp": E(hqq.shrink_lp, lambda: dict(x=W(), beta=10.0, lp_norm=0.7)),
    "llm_int8.Int8MixedLinear": E(llm_int8.Int8MixedLinear, lambda: dict(
        in_features=64, out_features=16, bias=True, threshold=6.0, dtype=torch.float32),
        accepts={"threshold": ["None"]}),
    "llm_int8.Int8Weight.from_float": E(llm_int8.Int8Weight.from_float, lambda: dict(W=W())),
    "llm_int8.check_threshold": E(llm_int8.check_threshold, lambda: dict(threshold=6.0),
                                  accepts={"threshold": ["None"]}),
    "llm_int8.int8_mixed_matmul": E(llm_int8.int8_mixed_matmul, lambda: dict(
        X=X(), W=W(), threshold=2.0, return_outliers=False), accepts={"threshold": ["None"]}),
    "llm_int8.int_matmul": E(llm_int8.int_matmul, lambda: dict(A_q=int8_codes(8), B_q=int8_codes(16))),
    "llm_int8.outlier_columns": E(llm_int8.outlier_columns, lambda: dict(X=X(), threshold=2.0),
                                  accepts={"threshold": ["None"]}),
    "llm_int8.quantize_layer": E(llm_int8.quantize_layer, lambda: dict(
        name="0", linear=nn.Linear(64, 16), X=X(), bits=8, granularity=PerChannel(0), symmetric=True,
        threshold=2.0), fixed=["name"], accepts={"threshold": ["None"], **DATA_FREE}),
    "lora.LoRALinear": E(lora.LoRALinear, lambda: dict(base=nn.Linear(64, 16), r=4, alpha=8.0, dropout=0.1),
                         accepts={"dropout": []}),
    "lora.add_lora": E(lora.add_lora, lambda: dict(
        model=llama(), r=4, alpha=8.0, targets=("q_proj", "v_proj"), dropout=0.1)),
    "lora.base_weight": E(lora.base_weight, lambda: dict(layer=nn.Linear(64, 16))),
    "lora.count_params": E(lora.count_params, lambda: dict(model=mlp())),
    "lora.lora_parameters": E(lora.lora_parameters, lambda: dict(model=lora_llama())),
    "lora.merge_lora": E(lora.merge_lora, lambda: dict(model=lora_llama())),
    "lora.token_windows": E(lora.token_windows, lambda: dict(
        ids=torch.arange(100) % 64, seq_len=8, batch_size=2, generator=torch.Generator().manual_seed(0)),
        sizes=["seq_len"]),
    "lora.train_lora": E(lora.train_lora, lambda: dict(
        model=lora_llama(), tokenizer=tokenizer, text=TEXT, steps=1, seq_len=8, batch_size=1, lr=1e-3,
        weight_decay=0.01, seed=1, progress=False), sizes=["seq_len"],
        accepts={"seed": SEEDS}),
    "nf4.NF4Linear": E(nf4.NF4Linear, lambda: dict(
        in_features=64, out_features=16, bias=True, block_size=16, double_quant=False, dtype=torch.float32)),
    "nf4.absmax_quantize": E(nf4.absmax_quantize, lambda: dict(x=W().reshape(-1, 16), code=nf4.normal_float_code())),
    "nf4.dynamic_code": E(nf4.dynamic_code),
    "nf4.normal_float_code": E(nf4.normal_float_code, lambda: dict(offset=0.9677083)),
    "nf4.quantize_layer": E(nf4.quantize_layer, lambda: dict(
        name="0", linear=nn.Linear(64, 16), X=None, bits=4, granularity=PerGroup(16), symmetric=True,
        double_quant=False), fixed=["name"]),
    "nf4.quantize_weight": E(nf4.quantize_weight, lambda: dict(
        W=W(), X=None, bits=4, group_size=16, double_quant=False), sizes=["group_size"]),
    "rtn.quantize_weight": E(rtn.quantize_weight, lambda: dict(W=W(), X=None, bits=4, group_size=16,
                                                               symmetric=False), sizes=["group_size"],
                             accepts=GROUP_NONE),
    "smoothquant.check_alpha": E(smoothquant.check_alpha, lambda: dict(alpha=0.5)),
    "smoothquant.input_absmax": E(smoothquant.input_absmax, lambda: dict(
        model=mlp(), layers=["0"], calibration=[X()])),
    "smoothquant.smooth_model": E(smoothquant.smooth_model, lambda: dict(
        model=llama(), calibration=[ids()], alpha=0.5, pairs=None)),
    "smoothquant.smoothing_factors": E(smoothquant.smoothing_factors, lambda: dict(
        act_absmax=X().abs().amax(0), W=W(), alpha=0.5)),
    "w8a8_sim.simulate_w8a8": E(qlearn.methods.w8a8_sim.simulate_w8a8, lambda: dict(
        model=mlp(), activations="per_tensor", bits=8, weight_bits=8, calibration=[X()], threshold=6.0,
        layers=None, observer=None), accepts={"threshold": ["None"]}),
    "weight.granularity_for": E(weight.granularity_for, lambda: dict(group_size=16), sizes=["group_size"],
                                accepts=GROUP_NONE),
    "weight.group_size_of": E(weight.group_size_of, lambda: dict(granularity=PerGroup(16))),
    "weight.uniform_layer": E(weight.uniform_layer, lambda: dict(
        linear=nn.Linear(64, 16), qw=rtn.quantize_weight(W(), bits=4, group_size=16), activations=None,
        kernel="auto"), fixed=["cls"], accepts=ACT_BITS),
    # training
    "calibrate.calibrate": E(qlearn.training.calibrate.calibrate, lambda: dict(
        model=mlp(), layers=["0"], batches=[X()], observer=None, where="input", progress=False),
        fixed=["transform"]),
    "calibrate.static_activation_layers": E(qlearn.training.calibrate.static_activation_layers, lambda: dict(
        model=static_mlp())),
    "calibrate.calibrate_activations": E(qlearn.calibrate_activations, lambda: dict(
        model=static_mlp(), batches=[X()], observer=None, progress=False)),
    "lsq.lsq_init_scale": E(lsq.lsq_init_scale, lambda: dict(W=W(), bits=4, granularity=PerChannel(0))),
    "lsq.lsq_qparams": E(lsq.lsq_qparams, lambda: dict(
        scale=lsq.lsq_init_scale(W(), 4, PerChannel(0)), bits=4, granularity=PerChannel(0), dtype=torch.float32)),
    "lsq.lsq_fake_quantize": E(lsq.lsq_fake_quantize, lambda: dict(
        W=W(), scale=lsq.lsq_init_scale(W(), 4, PerChannel(0)), bits=4, granularity=PerChannel(0))),
    "observers.qparams_from_range": E(qlearn.training.observers.qparams_from_range, lambda: dict(
        lo=X().amin(0), hi=X().amax(0), bits=8, symmetric=False, granularity=PerChannel(1), dtype=torch.float32)),
    "observers.block_rows": E(qlearn.training.observers.block_rows, lambda: dict(x=W(), granularity=PerGroup(16))),
    "observers.MinMaxObserver": E(qlearn.training.observers.MinMaxObserver, lambda: dict(
        bits=8, symmetric=False, granularity=PerTensor())),
    "observers.MovingAverageMinMaxObserver": E(qlearn.training.observers.MovingAverageMinMaxObserver, lambda: dict(
        bits=8, symmetric=False, granularity=PerTensor(), averaging_constant=0.1)),
    "observers.PercentileObserver": E(qlearn.training.observers.PercentileObserver, lambda: dict(
        bits=8, symmetric=False, granularity=PerTensor(), percentile=99.9)),
    "observers.MSEObserver": E(qlearn.training.observers.MSEObserver, lambda: dict(
        bits=8, symmetric=False, granularity=PerTensor(), grid=20)),
    "observers.make_observer": E(qlearn.training.observers.make_observer, lambda: dict(
        name="minmax", bits=8, symmetric=False, granularity=PerTensor())),
    "qat.QATLinear": E(qat.QATLinear, lambda: dict(
        in_features=64, out_features=16, bias=True, bits=4, symmetric=True, granularity=PerChannel(0),
        observer="minmax", lsq=False, recalibrate_every=2, act_qparams=None)),
    "qat.prepare_qat": E(qat.prepare_qat, lambda: dict(model=mlp(), layers=["0"], act_qparams=None)),
    "qat.qat_layers": E(qat.qat_layers, lambda: dict(model=qat_mlp())),
    "qat.recalibrate": E(qat.recalibrate, lambda: dict(model=qat_mlp())),
    "qat.convert": E(qat.convert, lambda: dict(model=qat_mlp(), kernel="reference")),
    # pruning an LLM's layers (notebook 13)
    "prune.check_pattern": E(prune.check_pattern, lambda: dict(pattern="2:4", in_features=64, sparsity=0.5),
                             sizes=["in_features"], accepts={"pattern": ["None"]}),  # None: unstructured
    "prune.nm_mask": E(prune.nm_mask, lambda: dict(scores=W().abs(), n=2, m=4)),
    "prune.row_mask": E(prune.row_mask, lambda: dict(scores=W().abs(), k=8), accepts={"k": ["0"]}),  # prune none
    "wanda.scores": E(wanda.scores, lambda: dict(W=W(), X=X())),
    "wanda.prune_weight": E(wanda.prune_weight, lambda: dict(W=W(), X=X(), sparsity=0.5, pattern=None,
                                                              return_mask=False)),
    "sparsegpt.prune_weight": E(sparsegpt.prune_weight, lambda: dict(
        W=W(), X=X(), sparsity=0.5, pattern=None, block_size=32, damp=0.01, bits=None, group_size=None,
        symmetric=False, mask="row", return_mask=False, progress=False), sizes=["block_size"],
        accepts={"bits": ["3"]}),  # 3 bits: the joint mode
    "gptq.obs_start": E(gptq.obs_start, lambda: dict(W=W(), X=X())),
    "pruning.magnitude_weight": E(pruning.magnitude_weight, lambda: dict(W=W(), sparsity=0.5, pattern=None,
                                                                          return_mask=False)),
    "pruning.prune_model": E(pruning.prune_model, lambda: dict(
        model=llama(), method="wanda", sparsity=0.5, pattern=None, calibration=[ids()], bits=None, exclude=(),
        progress=False)),
    "sparse.compress_bitmask": E(sparse.compress_bitmask, lambda: dict(W=W())),
    "sparse.decompress_bitmask": E(sparse.decompress_bitmask, lambda: dict(
        values=sparse.compress_bitmask(W())[0], mask=sparse.compress_bitmask(W())[1], shape=(16, 64))),
    "sparse.compress_2to4": E(sparse.compress_2to4, lambda: dict(W=W() * prune.nm_mask(W().abs(), 2, 4))),
    "sparse.decompress_2to4": E(sparse.decompress_2to4, lambda: dict(
        values=sparse.compress_2to4(W() * prune.nm_mask(W().abs(), 2, 4))[0],
        indices=sparse.compress_2to4(W() * prune.nm_mask(W().abs(), 2, 4))[1])),
    "sparse.sparse_weight_bytes": E(sparse.sparse_weight_bytes, lambda: dict(
        W=W(), format="bitmask", value_bits=None, group_size=None), accepts={"value_bits": ["3"]}),
    "sparse.sparse_model_bytes": E(sparse.sparse_model_bytes, lambda: dict(
        model=mlp(), layers=["0"], format="bitmask", value_bits=None, group_size=None),
        accepts={"value_bits": ["3"]}),
    "distill_llm.distill_llm": E(distill_llm.distill_llm, lambda: dict(
        student=pruned_llama(), teacher=llama(), tokenizer=tokenizer, text=TEXT,
        masks={n: torch.ones_like(pruned_llama().get_submodule(n).weight, dtype=torch.bool) for n in llama_linears()},
        train="masked", steps=1, seq_len=8, batch_size=1, lr=1e-3, T=2.0, alpha=1.0, seed=0, max_seconds=None,
        progress=False), sizes=["seq_len"], accepts={"seed": SEEDS, "max_seconds": ["3"]}),
    # the KV cache (notebook 12)
    "kv_cache.quantize_kv": E(kv_cache.quantize_kv, lambda: dict(
        x=torch.randn(1, 2, 64, 32, generator=torch.Generator().manual_seed(3)), bits=4, granularity="token",
        group_size=16), sizes=["group_size"], accepts={"bits": ["None"]}),  # None: kept in float
    "kv_cache.QuantizedKVCache": E(kv_cache.QuantizedKVCache, lambda: dict(
        bits=4, key_granularity="channel", value_granularity="token", group_size=32, residual_length=32),
        accepts={"bits": ["None"], "residual_length": ["0"]}),  # None: a float cache; 0: no window
    "kv_cache.kv_cache_bytes": E(kv_cache.kv_cache_bytes, lambda: dict(
        config=llama().config, tokens=100, bits=4, key_granularity="channel", value_granularity="token",
        group_size=8, residual_length=16, batch_size=1, dtype=torch.float16),
        sizes=["tokens", "batch_size"], accepts={"bits": ["None"], "residual_length": ["0"], "tokens": ["0"]}),
    "kv_eval.attention_states": E(kv_eval.attention_states, lambda: dict(model=llama(), ids=ids()[:1], layers=[1])),
    "kv_eval.attention_error": E(kv_eval.attention_error, lambda: dict(
        q=torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(6)), k=W()[:, :16].reshape(2, 16, 8),
        v=W()[:, 16:32].reshape(2, 16, 8), bits=2, key_granularity="channel", value_granularity="token",
        group_size=8, residual_length=8), accepts={"bits": ["None"], "residual_length": ["0"]}),
    "kv_eval.hf_quantized_cache": E(kv_eval.hf_quantized_cache, lambda: dict(
        config=llama().config, backend="quanto", bits=4, key_granularity="channel", value_granularity="token",
        group_size=8, residual_length=8), accepts={"residual_length": ["0"]}),
    "kv_eval.score_caches": E(kv_eval.score_caches, lambda: dict(
        model=llama(), ids=ids()[:1], caches={"kivi4": lambda: kv_cache.QuantizedKVCache(4, group_size=8,
                                                                                         residual_length=0)},
        chunk=4)),
    # GGUF's block formats (notebook 14)
    "ggml_quants.quantize_blocks": E(ggml_quants.quantize_blocks, lambda: dict(W=W(), type="Q4_0", imatrix=None)),
    "ggml_quants.dequantize_blocks": E(ggml_quants.dequantize_blocks, lambda: dict(
        data=ggml_quants.quantize_blocks(W(), "Q4_0"), type="Q4_0", shape=(16, 64))),
    "ggml_quants.importance": E(ggml_quants.importance, lambda: dict(X=X())),
    "ggml_quants.quantize_weight": E(ggml_quants.quantize_weight, lambda: dict(W=W(), X=None, type="Q4_1")),
    "ggml_quants.model_importance": E(ggml_quants.model_importance, lambda: dict(
        model=llama(), batches=[ids()], names=None), accepts={"names": ["None"]}),
    "mixed_precision.decoder_blocks": E(mixed_precision.decoder_blocks, lambda: dict(model=llama())),
    "mixed_precision.block_sensitivity": E(mixed_precision.block_sensitivity, lambda: dict(
        model=llama(), tokenizer=tokenizer, text=TEXT, bits=4, group_size=32, blocks=None, window=16,
        progress=False), sizes=["window", "group_size"], accepts={"text": ["nope"], "blocks": ["None"]}),
    "mixed_precision.block_bytes": E(mixed_precision.block_bytes, lambda: dict(
        model=llama(), bits_options=(4, 5, 8), blocks=None), accepts={"blocks": ["None"]}),
    "mixed_precision.gguf_type": E(mixed_precision.gguf_type, lambda: dict(bits=4)),
    "mixed_precision.estimated_kl": E(mixed_precision.estimated_kl, lambda: dict(
        sensitivity=0.1, measured_bits=4, bits=5)),
    "mixed_precision.allocate_bits": E(mixed_precision.allocate_bits, lambda: dict(
        sensitivity={"a": 0.5, "b": 0.1}, costs={"a": {4: 10, 5: 12}, "b": {4: 10, 5: 12}}, budget=22,
        measured_bits=4), sizes=["budget"]),
    "mixed_precision.quantize_mixed": E(mixed_precision.quantize_mixed, lambda: dict(
        model=llama(), plan={LAYER0: 4}, method="rtn", group_size=32, calibration=None, blocks=None),
        sizes=["group_size"], accepts={"blocks": ["None"], "calibration": ["None"]}),
    "llama_cpp.available": E(llama_cpp.available, lambda: dict()),
    "gguf_export.permute_for_gguf": E(gguf_export.permute_for_gguf, lambda: dict(W=W(), n_head=2),
                                      accepts={"W": ["nan", "inf", "-inf", "int", "bool"]}),  # a reordering only
    # float formats (notebook 15): FP8, MX, NVFP4; rotations
    "fp8.FloatFormat": E(fp8.FloatFormat, lambda: dict(name="e4m3", exponent_bits=4, mantissa_bits=3, special="fn"),
                         accepts={"name": ["nope"], "mantissa_bits": ["0"]}),  # a label; E3M0 is a format
    "fp8.encode": E(fp8.encode, lambda: dict(x=W(), fmt=fp8.E4M3)),
    "fp8.decode": E(fp8.decode, lambda: dict(codes=fp8.encode(W(), fp8.E4M3), fmt=fp8.E4M3)),
    "fp8.quantize_weight": E(fp8.quantize_weight, lambda: dict(
        W=W(), X=X(), format="fp8_e4m3", granularity="block", block_size=32), sizes=["block_size"]),
    "fp8.quantize_activations": E(fp8.quantize_activations, lambda: dict(x=X())),
    "fp8.FP8Linear": E(fp8.FP8Linear, lambda: dict(
        in_features=64, out_features=16, bias=True, format="fp8_e4m3", granularity="channel", block_size=128,
        activations="fp8_e4m3", dtype=torch.float32), sizes=["block_size"], accepts={"activations": ["None"]}),
    "fp8.quantize_layer": E(fp8.quantize_layer, lambda: dict(
        name="0", linear=nn.Linear(64, 16), X=X(), bits=8, granularity=PerChannel(0), symmetric=True,
        format="fp8_e4m3", block_size=None, fp8_activations=False), fixed=["name"],
        accepts={"block_size": ["3"], **DATA_FREE}),  # 3: blocks of 3 x 3
    "mx.MXFormat": E(mx.MXFormat, lambda: dict(element=mx.E2M1, block_size=32, scale="e8m0"), sizes=["block_size"]),
    "mx.e8m0_scale": E(mx.e8m0_scale, lambda: dict(amax=W().abs().amax(dim=1), emax=2),
                       accepts={"emax": ["0"]}),  # a format whose largest value is below 2
    "mx.e8m0_decode": E(mx.e8m0_decode, lambda: dict(code=mx.e8m0_scale(W().abs().amax(dim=1), 2))),
    "mx.pack": E(mx.pack, lambda: dict(codes=mx_codes(), bits=6)),
    "mx.unpack": E(mx.unpack, lambda: dict(packed=mx.pack(mx_codes(), 6), bits=6)),
    "mx.quantize_weight": E(mx.quantize_weight, lambda: dict(W=W(), X=X(), format="mxfp4", granularity=None)),
    "mx.quantize_weight[nvfp4]": E(mx.quantize_weight, lambda: dict(W=W(), X=X(), format="nvfp4")),
    "mx.to_gguf_mxfp4": E(mx.to_gguf_mxfp4, lambda: dict(qw=mx.quantize_weight(W(), format="mxfp4"))),
    "mx.MXLinear": E(mx.MXLinear, lambda: dict(
        in_features=64, out_features=16, bias=True, format="nvfp4", dtype=torch.float32)),
    "mx.quantize_layer": E(mx.quantize_layer, lambda: dict(
        name="0", linear=nn.Linear(64, 16), X=X(), bits=4, granularity=PerChannel(0), symmetric=True,
        format="mxfp4", block_size=None, fp8_activations=False), fixed=["name"], accepts=DATA_FREE),
    "rotation.hadamard": E(rotation.hadamard, lambda: dict(n=48, random_signs=True, seed=1), sizes=["n"],
                               accepts={"seed": SEEDS}),
    "rotation.hadamard_transform": E(rotation.hadamard_transform, lambda: dict(x=X())),
    "rotation.OnlineHadamard": E(rotation.OnlineHadamard, lambda: dict(linear=nn.Linear(64, 16))),
    "rotation.DecoderLayout": E(rotation.DecoderLayout, lambda: dict(**vars(rotation.LLAMA)),
                                accepts={f: ["nope"] for f in ("layers", "final_norm", "head", "online")}),  # names
    "hadamard_mx.quantize_weight": E(hadamard_mx.quantize_weight, lambda: dict(
        W=W(), X=X(), format="mxfp4", block_size=32, random_signs=True, seed=1), sizes=["block_size"],
        accepts={"seed": SEEDS, "block_size": ["None"]}),  # None: the largest power of two dividing in
    "hadamard_mx.HadamardMXLinear": E(hadamard_mx.HadamardMXLinear, lambda: dict(
        in_features=64, out_features=16, bias=True, format="mxfp4", block_size=32, random_signs=True,
        dtype=torch.float32), sizes=["block_size"], accepts={"block_size": ["None"]}),
    "hadamard_mx.quantize_layer": E(hadamard_mx.quantize_layer, lambda: dict(
        name="0", linear=nn.Linear(64, 16), X=X(), bits=4, granularity=PerChannel(0), symmetric=True,
        format="mxfp4", block_size=32, random_signs=False, seed=0), fixed=["name"],
        accepts={**DATA_FREE, "seed": SEEDS, "block_size": ["None"]}),
    "block_float.quantize_dequantize": E(block_float.quantize_dequantize, lambda: dict(
        W=W(), element="e2m1", block_size=16, scale="e4m3"), sizes=["block_size"]),
    "block_float.bits_per_weight": E(block_float.bits_per_weight, lambda: dict(
        element="e2m1", block_size=16, scale="e4m3", numel=1024), sizes=["block_size", "numel"],
        accepts={"numel": ["None"]}),
    "rotation.rotate_model": E(rotation.rotate_model, lambda: dict(
        model=llama(), layout=rotation.LLAMA, random_signs=True, seed=1, online_hadamard=True),
        accepts={"seed": SEEDS}),
}


def _chain():
    model = llama()
    return dict(model=model, chain=block_inputs.block_chain(model, targets.blocks(llama_linears())))


LLAMA_CPP_SKIP = ("runs llama-cpp-python (an optional build, `make llama-cpp`) on a GGUF file; its refusals are "
                  "tested in tests/methods/test_llama_cpp.py")

SKIP = {
    # result records and containers: built by the library from checked input, never from user arguments
    "dtypes.FloatInfo": "a result record of float_info (fuzzed there)",
    "pruning.PruneReport": "a result record of prune_model (fuzzed there)",
    "distill_llm.DistillReport": "a result record of distill_llm (fuzzed there)",
    "dtypes.BitLayout": "a result record of bit_layout (fuzzed there)",
    "granularity.Granularity": "abstract base of PerTensor / PerChannel / PerGroup / PerToken",
    "quantize_model.QuantizeReport": "a result record of quantize_model (fuzzed there)",
    "awq.AWQWeight": "a result container of awq.quantize_weight (fuzzed there)",
    "hqq.HQQWeight": "a result container of hqq.quantize_weight (fuzzed there)",
    "llm_int8.Int8Weight": "a result container: built by Int8Weight.from_float (fuzzed as its own entry)",
    "nf4.NF4Weight": "a result container of nf4.quantize_weight (fuzzed there)",
    "lora.LoRAReport": "a result record of add_lora (fuzzed there)",
    "smoothquant.SmoothedGroup": "a result record of smooth_model (fuzzed there)",
    "w8a8_sim.Simulation": "a result record yielded by simulate_w8a8 (fuzzed there)",
    "folding.FoldState": "the undo record fold returns (fuzzed there)",
    "weight.QuantizedWeight": "abstract base of every method's quantized weight",
    "weight.UniformWeight": "a result container of rtn / gptq quantize_weight (fuzzed there)",
    "observers.Observer": "abstract base of the observers",
    "ggml_quants.GGMLWeight": "a result container of ggml_quants.quantize_weight (fuzzed there)",
    "ggml_quants.pack_blocks": "the exporter's inner writer of already checked codes and scales (its refusals are "
                               "tested in tests/methods/test_ggml_quants.py)",
    "kernels.Plan": "a result record of kernels.choose (fuzzed there)",
    "kv_cache.QuantizedKV": "a result container of kv_cache.quantize_kv (fuzzed there)",
    "kv_cache.QuantizedKVLayer": "built by QuantizedKVCache from checked settings (fuzzed there)",
    "kv_eval.CacheScore": "a result container of kv_eval.score_caches (fuzzed there)",
    "gguf_export.grid_blocks": "the exporter's inner step on a QuantLinear it has checked (tested through export_gguf)",
    "fp8.FP8Weight": "a result container of fp8.quantize_weight (fuzzed there)",
    "fp8.fill_layer": "from_linear's inner step: copies buffers it has just computed from a checked weight into the "
                      "layer it has just built (tested through FP8Linear / MXLinear.from_linear)",
    "mx.MXWeight": "a result container of mx.quantize_weight (fuzzed there)",
    "hadamard_mx.HadamardMXWeight": "a result container of hadamard_mx.quantize_weight (fuzzed there)",
    "llama_cpp.load": LLAMA_CPP_SKIP,
    "llama_cpp.perplexity": LLAMA_CPP_SKIP,
    "llama_cpp.kl_divergence": LLAMA_CPP_SKIP,
    "llama_cpp.tokens_per_second": LLAMA_CPP_SKIP,
    "llama_cpp.chat": LLAMA_CPP_SKIP,
    "llama_cpp.quantize_gguf": LLAMA_CPP_SKIP,
    "ggml_kquants.encode_k": "ggml_quants.quantize_blocks' inner step on blocks it has checked (fuzzed there)",
    "ggml_kquants.decode_k": "ggml_quants.dequantize_blocks' inner step on bytes it has checked (fuzzed there)",
    "gguf_export.export_gguf": "writes a GGUF file from a real tokenizer and a source GGUF's metadata: its refusals "
                               "are tested in tests/methods/test_gguf_export.py",
}

# Cases whose fix belongs to files other engineers own right now: {case id: reason}.
_KERNELS = "owned by the kernels engineer (qlearn/inference/kernels.py), fix pending: "
_SERIALIZE = "owned by the serialize engineer (qlearn/inference/serialize.py), fix pending: "
OWNED = {
}

# Cases where another outcome is right: {case id: (exception type, reason)}.
ALLOWED = {
    **{f"capture.run_batch-batch-{v}": (RuntimeError, "run_batch is the one call of the user's model; a batch the "
                                        "model cannot run raises the model's own error (check_batches refuses such "
                                        "batches against the model before any work)") for v in ("ndim", "int", "bool",
                                                                                               "f64", "f16max")},
}


# --------------------------------------------------------------------------------------------------- bad values
def _with_first(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = value
    return t


def _wrong_ndim(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1) if t.ndim >= 2 else t.reshape(1, -1, 1)


# (id, builder from the valid value, lenient): lenient values may be accepted if the result is finite.
FLOAT_TENSOR = [
    ("nan", lambda v: _with_first(v, math.nan), False),
    ("inf", lambda v: _with_first(v, math.inf), False),
    ("-inf", lambda v: _with_first(v, -math.inf), False),
    ("empty", lambda v: v[:0] if v.ndim else v.reshape(-1)[:0], True),
    ("ndim", _wrong_ndim, True),
    ("int", lambda v: v.round().to(torch.int32), False),
    ("bool", lambda v: v > 0, False),
    ("f64", lambda v: _with_first(v.double(), 1e300), True),
    ("f16max", lambda v: _with_first(v.half(), 65504.0), True),  # float16 at its largest finite value
    ("f32big", lambda v: _with_first(v.float(), -3e38), True),  # float32 near its largest finite value
    ("list", lambda v: v.tolist(), False),
    ("None", lambda v: None, False),
    ("str", lambda v: "W", False),
]
INT_TENSOR = [
    ("empty", lambda v: v[:0] if v.ndim else v.reshape(-1)[:0], True),
    ("ndim", _wrong_ndim, True),
    ("float", lambda v: v.float() + 0.5, False),
    ("list", lambda v: v.tolist(), False),
    ("None", lambda v: None, False),
    ("str", lambda v: "ids", False),
]
INT = [("0", lambda v: 0, False), ("-1", lambda v: -1, False), ("2.5", lambda v: 2.5, False),
       ("True", lambda v: True, False), ("None", lambda v: None, False), ("str3", lambda v: "3", False)]
SIZE = [("1e9", lambda v: 10**9, True)]
FLOAT = [("nan", lambda v: math.nan, False), ("inf", lambda v: math.inf, False),
         ("-inf", lambda v: -math.inf, False), ("-1.0", lambda v: -1.0, False), ("strx", lambda v: "x", False),
         ("None", lambda v: None, False), ("True", lambda v: True, False)]
BOOL = [("1", lambda v: 1, False), ("None", lambda v: None, False), ("yes", lambda v: "yes", False)]
STR = [("nope", lambda v: "nope", False), ("None", lambda v: None, False), ("3", lambda v: 3, False)]
MODULE = [("None", lambda v: None, False), ("str", lambda v: "model", False),
          ("Linear", lambda v: nn.Linear(64, 16), True)]
OTHER = [("None", lambda v: None, False), ("nope", lambda v: "nope", False), ("3", lambda v: 3, False)]
NON_FINITE = {"nan", "inf", "-inf"}


def bad_values(value, is_size: bool):
    if isinstance(value, torch.Tensor):
        return FLOAT_TENSOR if value.is_floating_point() else INT_TENSOR
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT + (SIZE if is_size else [])
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if isinstance(value, nn.Module):
        return MODULE
    return OTHER


def _default_of(fn, arg):
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        parameter = inspect.signature(target).parameters.get(arg)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if parameter is None else parameter.default


def build_cases():
    cases = []
    for key, entry in CALLS.items():
        for arg, value in entry.make().items():
            if arg in entry.fixed:
                continue
            accepts = entry.accepts.get(arg, ())
            for vid, builder, lenient in entry.values.get(arg) or bad_values(value, arg in entry.sizes):
                bad = builder(value) if not isinstance(value, torch.Tensor) else None
                default = _default_of(entry.fn, arg)
                is_default = default is not inspect.Parameter.empty and type(bad) is type(default) and \
                    not isinstance(bad, torch.Tensor) and bad == default
                same = not isinstance(value, torch.Tensor) and type(bad) is type(value) and bad == value
                lenient = lenient or accepts == "*" or vid in accepts or is_default or same
                case_id = f"{key}-{arg}-{vid}"
                marks = []
                if case_id in OWNED:
                    marks.append(pytest.mark.xfail(strict=True, reason=OWNED[case_id]))
                cases.append(pytest.param(key, arg, vid, lenient, id=case_id, marks=marks))
    return cases


# --------------------------------------------------------------------------------------------------- checks
class Hang(Exception):
    pass


@contextlib.contextmanager
def time_budget(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def non_finite(result, depth: int = 0, seen=None) -> list[str]:
    """Where the result holds NaN or inf: every tensor in it, recursively."""
    seen = set() if seen is None else seen
    if depth > 6 or id(result) in seen:
        return []
    seen.add(id(result))
    found = []
    if isinstance(result, torch.Tensor):
        wide = result.float() if result.is_floating_point() and result.dtype.itemsize == 1 else result  # fp8 codes
        if result.is_floating_point() and not result.is_meta and not bool(torch.isfinite(wide).all()):
            found.append(f"tensor {tuple(result.shape)}")
    elif isinstance(result, float):
        if not math.isfinite(result):
            found.append(repr(result))
    elif isinstance(result, nn.Module):
        for name, t in [*result.named_parameters(), *result.named_buffers()]:
            found += [f"{name}: {w}" for w in non_finite(t, depth + 1, seen)]
    elif isinstance(result, dict):
        for k, v in result.items():
            found += [f"[{k!r}] {w}" for w in non_finite(v, depth + 1, seen)]
    elif isinstance(result, (list, tuple)):
        for i, v in enumerate(result):
            found += [f"[{i}] {w}" for w in non_finite(v, depth + 1, seen)]
    elif isinstance(result, weight.QuantizedWeight) or isinstance(result, llm_int8.Int8Weight):
        found += [f"dequantize() {w}" for w in non_finite(result.dequantize(), depth + 1, seen)]
    elif dataclasses.is_dataclass(result) and not isinstance(result, type):
        for f in dataclasses.fields(result):
            found += [f".{f.name} {w}" for w in non_finite(getattr(result, f.name), depth + 1, seen)]
    return found


def run(fn, kwargs):
    """fn(**kwargs), a generator exhausted, a context manager entered: what a user would see."""
    with time_budget(TIME_BUDGET_S):
        result = fn(**kwargs)
        if isinstance(result, types.GeneratorType):
            result = list(result)
        elif hasattr(result, "__enter__") and hasattr(result, "__exit__") and not isinstance(result, nn.Module):
            with result as value:
                result = value
    return result


@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_cleanup(one_thread):
    yield
    registry.METHODS.pop("fuzz_rtn", None)  # registered by the register_method cases
    shutil.rmtree(_TMP, ignore_errors=True)


def test_every_public_callable_has_an_entry():
    public = public_callables()
    covered = {key.split("[")[0] for key in CALLS}
    missing = sorted(set(public) - covered - set(SKIP))
    assert not missing, f"public callables without a valid call in CALLS or a reason in SKIP: {missing}"
    stale = sorted((covered | set(SKIP)) - set(public) - {"llm_int8.Int8Weight.from_float"})
    assert not stale, f"entries for names that are no longer public: {stale}"


@pytest.mark.parametrize("key", list(CALLS))
def test_valid_call_works(key):
    entry = CALLS[key]
    result = run(entry.fn, entry.make())
    assert not non_finite(result), f"{key} returned non-finite values on its valid call: {non_finite(result)}"


@pytest.mark.parametrize("key, arg, vid, lenient", build_cases())
def test_bad_argument_is_refused_clearly(key, arg, vid, lenient):
    entry = CALLS[key]
    kwargs = entry.make()
    value = kwargs[arg]
    values = entry.values.get(arg) or bad_values(value, arg in entry.sizes)
    builder = dict((v, b) for v, b, _ in values)[vid]
    kwargs[arg] = builder(value)
    case_id = f"{key}-{arg}-{vid}"
    try:
        result = run(entry.fn, kwargs)
    except (ValueError, TypeError):
        return
    except Exception as error:  # noqa: BLE001 (the point: which type it is)
        allowed = ALLOWED.get(case_id)
        if allowed is not None and isinstance(error, allowed[0]):
            return
        raise AssertionError(f"{case_id}: raised {type(error).__name__}: {error}") from error
    assert lenient, f"{case_id}: accepted {kwargs[arg]!r:.80} silently (returned {type(result).__name__})"
    if vid not in NON_FINITE:
        bad = non_finite(result)
        assert not bad, f"{case_id}: returned NaN / inf from finite input: {bad[:3]}"
