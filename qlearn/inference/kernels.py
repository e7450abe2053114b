"""Fast paths for QuantLinear on PyTorch's own fused kernels, and when each one applies.

The reference path (`QuantLinear.reference_forward`) builds the whole float matrix W_hat
before every matmul: it reads the int8 codes, writes a float32 copy four times larger and
reads that again, so it is slower than plain float32. A fused kernel dequantizes inside the
matmul, tile by tile, and only ever reads the small integer codes from memory. At batch 1
a Linear layer is limited by memory bandwidth, so fewer bytes read means less time.

    int4_cpu   bits <= 4, PerGroup(32/64/128/256), out % 16 == 0, float activations, CPU
               torch.ops.aten._weight_int4pack_mm_for_cpu (computes in bfloat16)
               Its convention is  W_hat = (u - 8) * scale + zero  with u = W_q + 8 in 0..15
               and a float `zero`; ours is W_hat = scale * (W_q - zero_point), so at this
               boundary  u = W_q + 8  and  zero = -scale * zero_point.  2- and 3-bit codes fit in
               0..15 as well, so they run on the same kernel (they are stored packed 4 / byte).
    int8_cpu   bits 5..8, PerChannel(0), symmetric, float activations, CPU
               torch.ops.aten._weight_int8pack_mm (computes in bfloat16)
    w8a8       activations=2..8 (8 is W8A8), bits 5..8, PerChannel(0), symmetric:
               X_q = per-token codes, or codes of the static per-tensor scale (as `layer.input_qparams`),
               Y = (X_q @ W_q^T) * s_x * s_w^T + b
               integer matmul by torch._int_mm on CUDA and on CPUs with VNNI where a one-time probe
               shows it is exact (`int_mm_is_exact`); on other x86 CPUs by fbgemm's int8 GEMM (see
               `_w8a8_fbgemm`: one pass for activations of at most 7 bits, two passes for 8 bits).

Tolerances against the reference (checked in tests/inference/test_kernels.py): the bfloat16 paths round
activations and scales to 8 significant bits, so their relative error is about 1e-2; w8a8
accumulates exactly in int32 and differs only by float32 rounding (about 1e-6).
The fast paths are inference only: an input that needs a gradient takes the reference path.

Choosing once: which path fits depends on the layer and on the input's device, dtype and needs-grad
(and, for an empty input or CUDA's `_int_mm`, its size: `Plan.min_numel`). `choose` decides from scratch;
a QuantLinear asks it once per (device, dtype, needs-grad) and keeps the Plan in `layer._cache`, next to
each kernel's own weight layout, built on first use (not saved, not counted by `model_size_bytes`).
The layer drops that cache whenever its weights, activation scale, kernel setting, device or dtype change.

Memory layout: every tensor handed to a fused kernel goes through `aligned` first, so it is
contiguous and starts on a 64-byte boundary. The AVX-512 int8 kernel reads its weight with
aligned vector loads and crashes the process on a tensor that starts anywhere else, and a
tensor can: safetensors returns views into the file at whatever offset the header leaves, and
a slice or `torch.frombuffer` starts wherever it starts. Realigning is one copy, made once per
weight (kept in the cache) and only for an input that needs it.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple

import torch

from ..core.granularity import PerChannel, PerGroup
from ..core.primitives import minmax_params, qrange
from ..core.validation import check_float_tensor

__all__ = ["ALIGNMENT", "FAST_PATHS", "INT4_GROUP_SIZES", "LAYER_ATTRIBUTES", "REFERENCE", "Plan", "aligned", "choose",
           "int_mm_is_exact", "is_aligned", "select", "select_name"]

INT4_GROUP_SIZES = (32, 64, 128, 256)
ALIGNMENT = 64  # bytes: one cache line, the widest vector load (AVX-512) of any CPU kernel


def is_aligned(t: torch.Tensor) -> bool:
    """True when `t` is contiguous and its first element starts on an ALIGNMENT-byte boundary."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"is_aligned needs a tensor, got {type(t).__name__}")
    return t.is_contiguous() and t.data_ptr() % ALIGNMENT == 0


def aligned(t: torch.Tensor) -> torch.Tensor:
    """`t` itself when it is contiguous and aligned, else a contiguous copy in fresh (aligned) memory.

    PyTorch's allocators return ALIGNMENT-byte aligned blocks, so a fresh tensor is always aligned.
    Shapes: unchanged.
    """
    if is_aligned(t) or t.numel() == 0:
        return t
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)  # fresh block, contiguous
    out.copy_(t)
    return out


class Plan(NamedTuple):
    """The path `layer(x)` takes for inputs like x (same device, dtype and needs-grad).

    name        a FAST_PATHS name, or "reference"
    forward     the function (layer, x) -> y that runs it
    min_numel   the fewest elements x must hold for it; a smaller x takes the reference path
                (an empty x always does; CUDA's torch._int_mm needs more than 16 tokens)
    """

    name: str
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
    min_numel: int


def _reference(layer, x):
    return layer.reference_forward(x)


REFERENCE = Plan("reference", _reference, 0)


def _cached(layer, name: str, build):
    """The kernel layout `name` of `layer`, built once by `build()` and kept in `layer._cache`.

    The layer clears its cache whenever its weights, device or dtype change, so the name is key enough.
    """
    if layer._cache is None:
        layer._cache = {}
    layout = layer._cache.get(name)
    if layout is None:
        with torch.no_grad():
            layout = layer._cache[name] = build()
    return layout


def _per_channel(layer) -> bool:
    return isinstance(layer.granularity, PerChannel) and layer.granularity.axis in (0, -2)


def _float_input(x) -> bool:
    return x.dtype in (torch.float32, torch.bfloat16, torch.float16) and not x.requires_grad


# ---- int4 weights, float activations: PyTorch's tinygemm-style CPU kernel -------------------------------

def _int4_plan(layer, x) -> Plan | None:
    g = layer.granularity
    if (layer.bits <= 4 and layer.activations is None and isinstance(g, PerGroup)
            and g.group_size in INT4_GROUP_SIZES and layer.out_features % 16 == 0
            and x.device.type == "cpu" and _float_input(x)):
        return Plan("int4_cpu", _int4_forward, 1)
    return None


def _int4_layout(layer):
    u = (layer.codes().to(torch.int32) + 8).contiguous()  # (out, in), 0..15
    packed = aligned(torch.ops.aten._convert_weight_to_int4pack_for_cpu(u, 1))  # opaque uint8 layout
    scale = layer.scale  # (out, in/g, 1)
    zero = -scale * layer.zero_point.to(scale.dtype)  # (out, in/g, 1): the kernel's float zero
    scale_and_zero = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()  # (in/g, out, 2)
    return packed, aligned(scale_and_zero.to(torch.bfloat16))


def _int4_forward(layer, x):
    packed, scale_and_zero = _cached(layer, "int4_cpu", lambda: _int4_layout(layer))
    x2 = aligned(x.reshape(-1, layer.in_features).to(torch.bfloat16))  # (tokens, in)
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, packed, layer.granularity.group_size, scale_and_zero)
    return _finish(layer, y, x)  # (..., out)


# ---- int8 weights, float activations --------------------------------------------------------------------

def _int8_plan(layer, x) -> Plan | None:
    if (layer.bits > 4 and layer.activations is None and layer.symmetric and _per_channel(layer)
            and x.device.type == "cpu" and _float_input(x)):
        return Plan("int8_cpu", _int8_forward, 1)
    return None


def _int8_forward(layer, x):
    W_q, scale = _cached(layer, "int8_cpu", lambda: (
        aligned(layer.weight_q), aligned(layer.scale.reshape(-1).to(torch.bfloat16))))  # (out, in), (out,)
    x2 = aligned(x.reshape(-1, layer.in_features).to(torch.bfloat16))  # (tokens, in)
    y = torch.ops.aten._weight_int8pack_mm(x2, W_q, scale)  # (tokens, out)
    return _finish(layer, y, x)


# ---- W8A8: int8 weights and int8 per-token activations --------------------------------------------------

@functools.lru_cache(maxsize=None)
def int_mm_is_exact(device_type: str) -> bool:
    """Does torch._int_mm give exact int32 sums on `device_type` ("cpu" or "cuda")? Probed once, hardest codes.

    On CPUs without VNNI int8 dot products (or with ONEDNN_MAX_CPU_ISA set below it, e.g. AVX2 or SSE41),
    oneDNN's int8 GEMM adds pairs of u8 * s8 products in saturating int16 (vpmaddubsw), so sums like
    127 * 127 * 384 come back wrong by up to ~1e5. All-127 codes against both signs are its worst case.

    Shapes: a (17, 64) @ (64, 16) probe (CUDA's _int_mm wants m > 16 and multiples of 8).
    """
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
    A = torch.full((17, 64), 127, dtype=torch.int8, device=device_type)
    B = torch.full((16, 64), 127, dtype=torch.int8, device=device_type)
    B[::2] = -127  # (16, 64): both signs
    try:
        got = torch._int_mm(A, B.t())  # (17, 16)
    except RuntimeError:
        return False
    want = (A.double() @ B.double().t()).to(torch.int32)  # exact
    return bool(torch.equal(got, want))


def _int_mm_fast(x) -> bool:
    """torch._int_mm is both fast (CUDA, or a CPU with VNNI) and exact here (see `int_mm_is_exact`)."""
    if x.device.type == "cuda":
        return int_mm_is_exact("cuda")
    return x.device.type == "cpu" and bool(getattr(torch.cpu, "_is_vnni_supported", lambda: False)()) \
        and int_mm_is_exact("cpu")


def _fbgemm_available() -> bool:
    return hasattr(torch.ops.quantized, "linear_with_input_q_dq_qweight_dq_output_fp32") and \
        any(e in torch.backends.quantized.supported_engines for e in ("fbgemm", "x86"))


def _w8a8_plan(layer, x) -> Plan | None:
    if not (layer.activations is not None and layer.bits > 4 and layer.symmetric and _per_channel(layer)
            and _float_input(x) and getattr(layer, "calibrated", True)):
        return None
    int_mm = _int_mm_fast(x)
    forward = _w8a8_int_mm_forward if int_mm else _w8a8_fbgemm_forward
    if x.device.type == "cuda":
        if layer.in_features % 8 or layer.out_features % 8:
            return None
        return Plan("w8a8", forward, 17 * layer.in_features)  # CUDA's _int_mm wants more than 16 tokens
    if x.device.type == "cpu" and (int_mm or _fbgemm_available()):
        return Plan("w8a8", forward, 1)
    return None


def _fbgemm_layout(layer):
    """fbgemm's prepacked int8 weight, with the real per-channel scales folded in."""
    with warnings.catch_warnings():  # the quantized-tensor constructors are deprecated but still the API
        warnings.simplefilter("ignore")
        W_q = torch._make_per_channel_quantized_tensor(
            aligned(layer.weight_q), layer.scale.reshape(-1).double(),
            torch.zeros(layer.out_features, dtype=torch.long), 0)
        return torch.ops.quantized.linear_prepack(W_q, None)


def _w8a8_fbgemm(layer, X_q, act_bits: int = 8):
    """(X_q @ W_q^T) * s_w^T on fbgemm, exact in int32.

    fbgemm multiplies uint8 activations u by int8 weights and adds pairs of products in int16
    on AVX2 CPUs, which saturates when u goes above 128 (2 * 255 * 127 > 2^15 - 1).
    Codes of at most 7 bits fit after an offset: u = X_q + 64 in 0..127 with zero point 64,
    one pass. 8-bit codes are split into two non-negative halves, X_q = P - N with P, N in
    0..128, run as one batch of twice the rows: (P @ W^T) - (N @ W^T), which costs two passes.
    """
    packed = _cached(layer, "w8a8_fbgemm", lambda: _fbgemm_layout(layer))
    if act_bits <= 7:
        offset = 2 ** (act_bits - 1)  # fbgemm stores u = X_q + offset in 0 .. 2^bits - 1 <= 127
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(X_q.float(), 1.0, offset, packed)
    tokens = X_q.shape[0]
    halves = torch.cat([X_q.clamp(min=0), (-X_q.to(torch.int16)).clamp(min=0)]).float()  # (2 tokens, in)
    Y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(halves, 1.0, 0, packed)  # (2t, out)
    return Y[:tokens] - Y[tokens:]  # (tokens, out)


def _activation_codes(layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input's codes and scale, as `quantize(x2, layer.input_qparams(x2))` gives them, bit for bit.

        s_x = max_j |x_tj| / qmax  per token t  (or the calibrated `activation_scale`, per tensor)
        X_q = clamp(round(x / s_x), qmin, qmax)  (symmetric: zero point 0)

    Written out for the w8a8 kernels so that a call reads the device back once, to check that x is finite (the
    error `quantize` gives); building a QParams would add five reads, its checks of the scale.

    Shapes: x (..., in) -> X_q (tokens, in) int8 of `layer.activations` bits, s_x (tokens, 1) or (1, 1) float32.
    """
    x2 = check_float_tensor(layer.activation_input(x.reshape(-1, layer.in_features).float()))  # (tokens, in)
    if layer.static_activations:
        s_x = layer.activation_scale.to(x2.device)  # (1, 1)
    else:
        s_x, _ = minmax_params(x2, (1,), layer.activations, True)  # (tokens, 1)
    qmin, qmax = qrange(layer.activations)
    return torch.round(x2 / s_x).clamp(qmin, qmax).to(torch.int8), s_x  # (tokens, in)


def _w8a8_int_mm_forward(layer, x):
    X_q, s_x = _activation_codes(layer, x)
    W_t = _cached(layer, "w8a8_int_mm", lambda: aligned(layer.weight_q).t())  # (in, out) view
    Y = torch._int_mm(aligned(X_q), W_t).float() * layer.scale.reshape(1, -1)  # (tokens, out)
    return _finish(layer, Y * s_x, x)


def _w8a8_fbgemm_forward(layer, x):
    X_q, s_x = _activation_codes(layer, x)
    Y = _w8a8_fbgemm(layer, X_q, layer.activations)  # (tokens, out)
    return _finish(layer, Y * s_x, x)


def _finish(layer, y, x):
    """Add the bias, cast back to the input dtype and restore the leading dims: (tokens, out) -> (..., out)."""
    y = y.to(x.dtype)
    if layer.bias is not None:
        y = y + layer.bias.to(x.dtype)
    return y.reshape(*x.shape[:-1], layer.out_features)  # (..., out)


FAST_PATHS = {"int4_cpu": _int4_plan, "int8_cpu": _int8_plan, "w8a8": _w8a8_plan}  # tried in this order


# What a layer must hold for the fast paths to read it (QuantLinear does). Checking the attributes instead
# of the class keeps this module below the layer class: linear.py imports kernels, never the reverse.
LAYER_ATTRIBUTES = ("weight_q", "scale", "zero_point", "bits", "granularity", "symmetric", "activations",
                    "in_features", "out_features", "bias", "kernel", "_cache", "input_qparams", "activation_input",
                    "static_activations")


def _check(layer, x, caller: str) -> None:
    if not isinstance(layer, torch.nn.Module) or not all(hasattr(layer, a) for a in LAYER_ATTRIBUTES) \
            or not isinstance(x, torch.Tensor):
        raise TypeError(f"{caller} needs a quantized linear layer (a QuantLinear: a module with "
                        f"{', '.join(LAYER_ATTRIBUTES[:4])}, ...) and an input tensor, got "
                        f"{type(layer).__name__} and {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{caller}: a QuantLinear takes floating-point inputs, got {x.dtype}")


def _choose(layer, x) -> Plan:
    if layer.kernel != "reference":
        for plan_for in FAST_PATHS.values():
            plan = plan_for(layer, x)
            if plan is not None:
                return plan
    return REFERENCE


def choose(layer, x) -> Plan:
    """The Plan of `layer(x)`, decided from scratch: the first fast path that fits inputs like x, else the reference.

    "Like x" means the same device, dtype and needs-grad; the size of x is left to `Plan.min_numel`.
    A QuantLinear asks once per kind of input and keeps the answer (see `QuantLinear.forward`).
    """
    _check(layer, x, "choose")
    return _choose(layer, x)


def select_name(layer, x) -> str:
    """Which path `layer(x)` takes: a FAST_PATHS name, or "reference" (kernel="reference", or none fits x)."""
    _check(layer, x, "select_name")
    plan = _choose(layer, x)
    return plan.name if x.numel() >= plan.min_numel else "reference"


def select(layer, x):
    """The fast forward function (layer, x) -> y that `layer(x)` runs, or None when it takes the reference path."""
    _check(layer, x, "select")
    plan = _choose(layer, x)
    return None if plan is REFERENCE or x.numel() < plan.min_numel else plan.forward
