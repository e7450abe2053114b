"""Quantize a whole model: replace its nn.Linear layers by a method's quantized layers, in place, all or nothing.

    report = quantize_model(model, bits=4, granularity=PerGroup(128), method="gptq", calibration=batches)

    data-free method (rtn, nf4, hqq, llm_int8):  every layer = method.quantize_layer(name, linear, None, ...)
    calibrated method (gptq, awq), block by block (see targets.blocks):
        X = inputs of the block's layers over the calibration batches (forward hooks; for a transformer's
            layers, each block runs alone on its cached inputs, see block_inputs)
        each layer of the block = method.quantize_layer(name, linear, X[name], ...)
        sequential (gptq): swap the block's new layers in now, so the next block sees quantized inputs

All or nothing: every argument, option, layer shape and the calibration batches are checked before the
first layer is touched. A data-free or non-sequential method builds every new layer before swapping any
in. A sequential one swaps block by block; on an error every replaced layer is put back and the method's
`prepare` is undone (its state's `undo()`), so the model is restored rather than deep-copied (no second
copy of the weights in memory). The methods and their protocol live in `registry.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.granularity import PerChannel, PerToken
from ..core.modules import replace_module
from ..core.validation import check_bool, check_choice, check_module
from .block_inputs import calibration_blocks
from .capture import check_batches
from .linear import KERNELS, check_activations
from .registry import get_method
from .targets import select_targets

__all__ = ["QuantizeReport", "model_size_bytes", "quantize_model"]


def _tensor_bytes(t: torch.Tensor) -> int:
    """numel * element size; a tensor subclass (optimum-quanto, torchao) is the sum of its inner tensors."""
    if type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def model_size_bytes(model: nn.Module) -> int:
    """Bytes the model really stores: every parameter and buffer once, at its own element size.

    Packed uint8 codes count one byte per 2 (int4) or 4 (int2) weights; scales, zero points, absmax values,
    AWQ input scales, biases, embeddings and LayerNorms count in full. Quantized tensor subclasses
    (optimum-quanto's frozen weights) count their integer data and scales. A fast kernel's private weight
    copy (`QuantLinear._cache`) is not a buffer and is not counted.
    """
    check_module(model)
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return sum(_tensor_bytes(t) for t in tensors.values())


@dataclass(frozen=True)
class QuantizeReport:
    """What `quantize_model` did: layers replaced, skipped (name -> reason), bytes, and the method's notes.

    notes: name -> a remark of the method (AWQ: where each input scale went). `stats()` asks every new layer
    that keeps run-time statistics (LLM.int8()'s float-kept columns) for them, so call it after a forward.
    """

    replaced: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0
    method: str = "rtn"
    notes: dict[str, str] = field(default_factory=dict)
    layers: dict[str, nn.Module] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ratio(self) -> float:
        """bytes_after / bytes_before."""
        return self.bytes_after / self.bytes_before if self.bytes_before else float("nan")

    def stats(self) -> dict[str, dict]:
        """{layer name: layer.quant_stats()} for the new layers that keep statistics (Int8MixedLinear)."""
        return {name: layer.quant_stats() for name, layer in self.layers.items() if hasattr(layer, "quant_stats")}

    def summary(self) -> str:
        """One line: layers replaced and the size change, e.g. for a notebook to print."""
        return (f"{len(self.replaced)} Linear layers replaced, {len(self.skipped)} skipped; "
                f"{self.bytes_before / 2**20:.2f} MiB -> {self.bytes_after / 2**20:.2f} MiB "
                f"({self.ratio:.3f}x)")


def _quantize_one(qmethod, name, linear, X, bits, granularity, symmetric, options) -> nn.Module:
    """qmethod.quantize_layer for one layer; an error names the layer (and keeps its type)."""
    try:
        return qmethod.quantize_layer(name, linear, X, bits, granularity, symmetric, **options)
    except (ValueError, TypeError) as err:
        raise type(err)(f"layer {name!r}: {err}") from err
    except RuntimeError as err:  # torch's own errors (a LinAlgError is one): say which layer
        raise ValueError(f"layer {name!r} could not be quantized with {qmethod.name}: {err}") from err


def quantize_model(model: nn.Module, bits: int = 8, granularity=PerChannel(), activations=None, exclude=(),
                   method: str = "rtn", calibration=None, progress: bool = False, symmetric: bool | None = None,
                   kernel: str = "auto", skip_incompatible: bool = False, quantize_tied: bool = False,
                   activation_granularity=PerToken(), **options) -> QuantizeReport:
    """Replace every nn.Linear of `model` (not in `exclude`) by `method`'s `bits`-bit layer, in place.

    method: a registered name ("rtn", "gptq", "awq", "hqq", "nf4", "llm_int8"; see
        qlearn.inference.registry.METHODS)
    calibration: an iterable of batches, each run as model(**batch) for a dict, else model(batch); needed by
        gptq and awq, checked but unused by the data-free methods. symmetric=None takes the method's default:
        below 8 bits asymmetric (a zero point per group, as torchao's int4 and optimum-quanto's qint4) wherever
        the method allows it, at 8 bits rtn is symmetric.
    activations=None keeps float activations (W8A16, W4A16, ...); activations=8 quantizes them dynamically
    per token (W8A8), for methods whose layer is a QuantLinear; with activation_granularity=PerTensor() the
    activations are static per tensor, and the model needs `qlearn.calibrate_activations(model, batches)`
    (qlearn.training.calibrate) before use (rtn only). A Linear smoothed at run time by SmoothQuant
    (`smooth_input_scale`) keeps its smoothing in the new layer; a method whose layer cannot keep it raises
    before anything is replaced.
    A layer whose shape the granularity cannot split (say in=100 with PerGroup(128)) raises a ValueError naming it,
    before anything is replaced; with `skip_incompatible=True` it is kept in float and listed in `report.skipped`.
    Subclasses of nn.Linear (such as MultiheadAttention's out_proj, whose weight its parent reads directly) are
    always skipped.
    The default PerChannel() fits every shape; for groups on SmolLM2 (in_features 576 and 1536) PerGroup(64)
    or PerGroup(32) fit, PerGroup(128) does not, and the error lists the group sizes that do. A Linear with a
    tied weight (`lm_head`) is skipped and listed unless `quantize_tied=True`, which gives it its own copy.
    **options go to the method (gptq: act_order, damp, block_size, grid; awq: n_grid, clip, pairs; hqq: iters, ...;
    nf4: double_quant; llm_int8: threshold).

    Shapes: each Linear weight (out, in) -> the method's layer, see its module.
    """
    check_module(model)
    if isinstance(model, nn.Linear):
        raise TypeError("quantize_model replaces Linear layers inside a model; for a single layer use "
                        "QuantLinear.from_linear(linear, ...)")
    qmethod = get_method(method)
    symmetric = qmethod.check(bits, granularity, symmetric, options)
    check_bool(skip_incompatible, "skip_incompatible")
    check_bool(quantize_tied, "quantize_tied")
    check_bool(progress, "progress")
    check_activations(activations, activation_granularity)
    check_choice(kernel, "kernel", KERNELS)
    defaults = {"activations": None, "kernel": "auto", "activation_granularity": PerToken()}
    for value, option in ((activations, "activations"), (kernel, "kernel"),
                          (activation_granularity, "activation_granularity")):
        if value != defaults[option] and not qmethod.takes("quantize_layer", option):
            raise ValueError(f"method {qmethod.name!r} does not take {option}={value!r}")
    targets, skipped = select_targets(model, granularity, exclude, skip_incompatible, quantize_tied)
    smoothed = [name for name, linear in targets if hasattr(linear, "smooth_input_scale")]
    if smoothed and not qmethod.takes("quantize_layer", "activation_granularity"):
        raise ValueError(f"{smoothed[0]} (and {len(smoothed) - 1} more) carry SmoothQuant's run-time input scale, "
                         f"which method {qmethod.name!r} would drop; use method='rtn' on a smoothed model")
    if qmethod.needs_calibration and calibration is None:
        raise ValueError(f"method {qmethod.name!r} needs calibration data: pass calibration=[batch, ...], each "
                         "batch a dict of model inputs (a tokenizer's output) or a tensor")
    batches = None if calibration is None else check_batches(calibration, model=model)
    linears = dict(targets)

    def options_for(fn_name):
        kept = {k: v for k, v in options.items() if qmethod.takes(fn_name, k)}
        extra = {"activations": activations, "kernel": kernel, "state": state,
                 "activation_granularity": activation_granularity}
        kept.update({k: v for k, v in extra.items() if qmethod.takes(fn_name, k)})
        return kept

    bytes_before = model_size_bytes(model)
    was_training = model.training
    model.eval()
    state, new, originals = None, {}, {}
    try:
        with torch.no_grad():
            if qmethod.prepare is not None:
                state = qmethod.prepare(model, batches, list(linears), bits, granularity, symmetric,
                                        **options_for("prepare"))
            layer_options = options_for("quantize_layer")
            bar = tqdm(total=len(linears), desc=f"quantize ({qmethod.name})", disable=not progress)
            steps = calibration_blocks(model, list(linears), batches) if qmethod.needs_calibration \
                else [(list(linears), {})]
            for group, X in steps:
                for name in group:
                    new[name] = _quantize_one(qmethod, name, linears[name], X.get(name), bits, granularity,
                                              symmetric, layer_options)
                    bar.update()
                if qmethod.sequential:  # the next block's inputs come from this quantized block
                    originals.update({name: replace_module(model, name, new[name]) for name in group})
                del X
            bar.close()
            for name, layer in new.items():  # every new layer exists: now swap the rest in
                if name not in originals:
                    originals[name] = replace_module(model, name, layer)
            notes = {} if qmethod.finish is None else dict(qmethod.finish(model, state, **options_for("finish")) or {})
    except BaseException:
        for name, old in originals.items():
            replace_module(model, name, old)
        if state is not None and hasattr(state, "undo"):
            state.undo()
        raise
    finally:
        model.train(was_training)
    if state is not None and hasattr(state, "notes"):
        notes = {**state.notes, **notes}
    return QuantizeReport(tuple(new), skipped, bytes_before, model_size_bytes(model), qmethod.name, notes, dict(new))
