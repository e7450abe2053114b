"""Quantize one tensor many ways and collect the error: the numbers behind the sweep plots and the explorer.

    roundtrip(x, ...)      x_hat = dequantize(quantize(x)) and its MSE, SQNR, max |error|, effective bits
    sqnr_sweep(x, ...)     SQNR for every (scheme, bits) pair
    pareto_sweep(x, ...)   (effective bits, SQNR) for every bits x granularity pair, and the Pareto front
"""

from __future__ import annotations

from ..core import metrics
from ..core.bits import SCALE_BITS, ZERO_POINT_BITS, effective_bits
from ..core.granularity import Granularity, PerChannel, PerGroup, PerTensor, check_granularity
from ..core.primitives import choose_qparams, dequantize, quantize
from ..core.validation import check_bits, check_bool, check_float_tensor

__all__ = ["pareto_sweep", "roundtrip", "sqnr_sweep"]


def roundtrip(x, bits: int = 8, symmetric: bool = False, granularity: Granularity = PerTensor(),
              restricted: bool = True, scale_bits: int = SCALE_BITS, zero_point_bits: int = ZERO_POINT_BITS):
    """Quantize and dequantize x; return (x_hat, numbers).

    numbers: {"mse", "sqnr_db", "max_abs_error", "effective_bits"}; effective bits count what QuantLinear stores,
    a float32 scale (and an int8 zero point for the asymmetric scheme) per block, unless scale_bits /
    zero_point_bits say otherwise (`**qlearn.core.bits.PAPERS_FP16` for the papers' fp16 count).
    Shapes: x (...) -> x_hat (...), same dtype.
    """
    qp = choose_qparams(x, bits, symmetric, granularity, restricted=restricted)
    x_hat = dequantize(quantize(x, qp), qp)
    return x_hat, {"mse": metrics.mse(x, x_hat), "sqnr_db": metrics.sqnr_db(x, x_hat),
                   "max_abs_error": metrics.max_abs_error(x, x_hat),
                   "effective_bits": effective_bits(x.shape, bits, granularity, symmetric, scale_bits, zero_point_bits)}


def _check_bits_list(bits) -> list[int]:
    bits = list(bits) if not isinstance(bits, int) else [bits]
    if not bits:
        raise ValueError("bits must list at least one bit width, e.g. range(2, 9)")
    return [check_bits(b) for b in bits]


def sqnr_sweep(x, schemes: dict, bits=range(2, 9)) -> dict[str, dict[int, float]]:
    """SQNR in dB of x for each scheme and bit width: {label: {bits: sqnr_db}}.

    schemes: {label: {"symmetric": bool, "granularity": Granularity}} (either key may be left out:
    asymmetric, per tensor by default), e.g. {"symmetric": {"symmetric": True}, "asymmetric": {}}.
    """
    check_float_tensor(x)
    if not isinstance(schemes, dict) or not schemes:
        raise TypeError("schemes must be a non-empty dict {label: {'symmetric': bool, 'granularity': ...}}")
    bits = _check_bits_list(bits)
    out = {}
    for label, spec in schemes.items():
        if not isinstance(spec, dict) or set(spec) - {"symmetric", "granularity", "restricted"}:
            raise ValueError(f"scheme {label!r} must be a dict with keys among symmetric, granularity, restricted; "
                             f"got {spec!r}")
        sym = check_bool(spec.get("symmetric", False), "symmetric")
        gran = check_granularity(spec.get("granularity", PerTensor()))
        restricted = spec.get("restricted", True)
        out[str(label)] = {b: roundtrip(x, b, sym, gran, restricted)[1]["sqnr_db"] for b in bits}
    return out


def pareto_sweep(W, bits=(2, 3, 4, 8), group_sizes=(32, 64, 128), symmetric: bool = False,
                 scale_bits: int = SCALE_BITS, zero_point_bits: int = ZERO_POINT_BITS) -> list[dict]:
    """(effective bits, SQNR) of a weight W (out, in) for bits x {per tensor, per channel, per group g}.

    Returns one dict per configuration: {"label", "bits", "granularity", "effective_bits", "sqnr_db",
    "pareto"}; "pareto" is True when no other configuration has both fewer effective bits and a higher SQNR.
    Shapes: W (out, in); every group size must divide `in`.
    """
    check_float_tensor(W, "W")
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D weight (out, in), got shape {tuple(W.shape)}")
    grans = [("tensor", PerTensor()), ("channel", PerChannel(0))] + [(f"g{g}", PerGroup(g)) for g in group_sizes]
    points = []
    for b in _check_bits_list(bits):
        for name, gran in grans:
            numbers = roundtrip(W, b, symmetric, gran, True, scale_bits, zero_point_bits)[1]
            points.append({"label": f"{b}b {name}", "bits": b, "granularity": gran,
                           "effective_bits": numbers["effective_bits"], "sqnr_db": numbers["sqnr_db"]})
    for p in points:
        p["pareto"] = not any(q["effective_bits"] <= p["effective_bits"] and q["sqnr_db"] > p["sqnr_db"]
                              or q["effective_bits"] < p["effective_bits"] and q["sqnr_db"] >= p["sqnr_db"]
                              for q in points)
    return points
