"""The weight methods at model level: each one's `quantize_layer`, registered for `quantize_model`.

    quantize_model(model, bits=4, granularity=PerGroup(128), method="gptq", calibration=batches)

    method    replacement layer        data               what the layer stores
    rtn       QuantLinear              none               int codes, scale, int8 zero point (registered in inference)
    gptq      QuantLinear              X, sequential      the same storage: GPTQ only chooses other codes
    awq       QuantLinear / AWQLinear  X                  codes of W diag(s); s folded before (see awq_model)
    hqq       HQQLinear                none               codes, scale, float32 zero point
    nf4       NF4Linear                none               packed NF4 codes, absmax per block (granularity PerGroup)
    llm_int8  Int8MixedLinear          none (at run time) int8 codes per row; outlier input columns in float

The granularity becomes each method's group size: PerGroup(g) -> group_size=g, PerChannel(0) -> None
(one scale per output row). Importing this module (`import qlearn` does) registers the methods, and the
new layer classes with `serialize`, so save_quantized / load_quantized handle them.
"""

from __future__ import annotations


from ..core.granularity import PerChannel, PerGroup
from ..inference import serialize
from ..inference.linear import QuantLinear
from ..inference.registry import QuantMethod, register_method
from . import awq_model, gptq, hqq
from ._layers import group_size_of, uniform_layer
from .awq_linear import AWQLinear
from .hqq_linear import HQQLinear
from .llm_int8_linear import Int8MixedLinear
from .nf4_linear import NF4Linear


def _gptq_layer(name, linear, X, bits, granularity, symmetric, act_order=False, damp=0.01, block_size=128,
                grid="minmax", activations=None, kernel="auto") -> QuantLinear:
    """GPTQ's codes on the min-max (or with grid="mse" the shrunk) grid, in a QuantLinear."""
    qw = gptq.quantize_weight(linear.weight.detach(), X.to(linear.weight.device), bits=bits,
                              group_size=group_size_of(granularity), act_order=act_order, damp=damp,
                              block_size=block_size, symmetric=symmetric, grid=grid)
    return uniform_layer(linear, qw, activations, kernel)


def _hqq_layer(name, linear, X, bits, granularity, symmetric, iters=20, lp_norm=0.7, beta=10.0, kappa=1.01,
               early_stop=True) -> HQQLinear:
    """HQQ's codes and float zero point, in an HQQLinear."""
    qw = hqq.quantize_weight(linear.weight.detach(), bits=bits, group_size=group_size_of(granularity), iters=iters,
                             lp_norm=lp_norm, beta=beta, kappa=kappa, early_stop=early_stop)
    return HQQLinear.from_weight(qw, linear.bias)


def _nf4_layer(name, linear, X, bits, granularity, symmetric, double_quant=False) -> NF4Linear:
    """NF4 with one absmax per PerGroup block, in an NF4Linear."""
    return NF4Linear.from_linear(linear, block_size=granularity.group_size, double_quant=double_quant)


def _llm_int8_layer(name, linear, X, bits, granularity, symmetric, threshold=6.0) -> Int8MixedLinear:
    """int8 weights per output row; outlier input columns (|x| >= threshold) run in float at every forward."""
    return Int8MixedLinear.from_linear(linear, threshold=threshold)


METHODS = (
    QuantMethod("gptq", _gptq_layer, needs_calibration=True, sequential=True, symmetric=(False, True),
                granularities=(PerChannel, PerGroup), description="GPTQ (sequential, QuantLinear)"),
    QuantMethod("awq", awq_model.quantize_layer, needs_calibration=True, prepare=awq_model.prepare,
                symmetric=(False, True), granularities=(PerChannel, PerGroup),
                description="AWQ: input scales folded before the layer where possible"),
    QuantMethod("hqq", _hqq_layer, symmetric=(False,), granularities=(PerChannel, PerGroup),
                description="HQQ, data-free, float zero point (HQQLinear)"),
    QuantMethod("nf4", _nf4_layer, bits=(4,), symmetric=(True,), granularities=(PerGroup,),
                description="NF4 of QLoRA, block absmax = PerGroup (NF4Linear)"),
    QuantMethod("llm_int8", _llm_int8_layer, bits=(8,), symmetric=(True,), granularities=(PerChannel,),
                description="LLM.int8(): int8 per row, outlier columns in float (Int8MixedLinear)"),
)
for _method in METHODS:
    register_method(_method, replace=True)
for _cls in (HQQLinear, AWQLinear, NF4Linear, Int8MixedLinear):
    serialize.register_layer_type(_cls)
