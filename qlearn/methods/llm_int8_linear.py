"""An nn.Linear replacement that runs LLM.int8() (see `llm_int8.py` for the formulas).

    layer = Int8MixedLinear.from_linear(linear, threshold=6.0)
    y = layer(x)                       # int8 weight codes, outlier input columns in float
    layer.last_outliers                # the input columns kept in float by the last forward
    layer.outliers_seen                # (in,) bool: every column ever kept in float (the union)

The weight is stored once as int8 codes per output row (W_q, scale buffers); the outlier columns
are found again for every input, as in bitsandbytes' Linear8bitLt(has_fp16_weights=False), and
multiply the dequantized weight columns.
"""

from __future__ import annotations

import torch
from torch import nn

from .llm_int8 import Int8Weight, check_threshold, int8_mixed_matmul


class Int8MixedLinear(nn.Module):
    """Y = int8_mixed_matmul(X, Int8Weight(W_q, scale), threshold) + b, leading dims of X kept.

    Shapes: weight_q (out, in) int8, scale (out, 1) float32, bias (out,) or None;
            x (..., in) -> y (..., out).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold=6.0,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        for value, name in ((in_features, "in_features"), (out_features, "out_features")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.in_features, self.out_features = in_features, out_features
        self.threshold = check_threshold(threshold)
        self.register_buffer("weight_q", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.ones(out_features, 1, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        self.reset_outlier_stats()

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold=6.0) -> "Int8MixedLinear":
        """Quantize a trained nn.Linear's weight to int8 per output row (absmax / 127)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs a torch.nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach()
        if W.is_meta:
            raise ValueError("the Linear layer's weight is on the meta device (no values to quantize)")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, threshold=threshold,
                    dtype=W.dtype, device=W.device)
        w = Int8Weight.from_float(W)
        layer.weight_q.copy_(w.W_q)
        layer.scale.copy_(w.scale)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def config(self) -> dict:
        """The constructor arguments that rebuild this layer's skeleton (for serialize)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "threshold": self.threshold, "dtype": self.bias.dtype if self.bias is not None else torch.float32}

    def quant_stats(self) -> dict[str, int]:
        """Input columns kept in float: in the last forward, at most in one forward, ever; and forwards run."""
        return {"float_columns_last": int(self.last_outliers.numel()), "float_columns_max": self.max_outliers,
                "float_columns_seen": int(self.outliers_seen.sum()), "forwards": self.forwards}

    def reset_outlier_stats(self) -> None:
        """Forget the outlier columns seen so far."""
        self.last_outliers = torch.zeros(0, dtype=torch.long)  # (k,) columns of the last forward
        self.max_outliers = 0  # the largest k of any forward
        self.outliers_seen = torch.zeros(self.in_features, dtype=torch.bool)  # (in,) union over forwards
        self.forwards = 0

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight W_hat = scale * W_q (out, in), for code that reads `.weight`."""
        return self.scale * self.weight_q.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"input must be a tensor (..., {self.in_features}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        x2 = x.reshape(-1, self.in_features)  # (tokens, in)
        y, cols = int8_mixed_matmul(x2, Int8Weight(self.weight_q, self.scale), self.threshold, return_outliers=True)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        cols = cols.cpu()
        self.last_outliers = cols
        self.max_outliers = max(self.max_outliers, int(cols.numel()))
        self.outliers_seen[cols] = True
        self.forwards += 1
        return y.reshape(*x.shape[:-1], self.out_features)  # (..., out)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"threshold={self.threshold}")


def outlier_report(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per Int8MixedLinear of `model`: float-kept columns in the last forward, the max and the union size."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: {"last": int(m.last_outliers.numel()), "max": m.max_outliers,
                   "seen": int(m.outliers_seen.sum()), "forwards": m.forwards}
            for name, m in model.named_modules() if isinstance(m, Int8MixedLinear)}


def replace_linears(model: nn.Module, threshold=6.0, names=None) -> list[str]:
    """Swap nn.Linear layers (all, or those in `names`) for Int8MixedLinear, in place; returns their names.

    A stand-in for the model-level entry point (`quantize_model(method="llm_int8")`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_threshold(threshold)
    modules = dict(model.named_modules())
    if names is None:
        names = [n for n, m in modules.items() if type(m) is nn.Linear]
    else:
        names = list(names)
        bad = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
        if bad:
            raise ValueError(f"these names are not nn.Linear modules of the model: {bad}")
    if not names:
        raise ValueError("the model has no nn.Linear layer to replace")
    new = {n: Int8MixedLinear.from_linear(modules[n], threshold) for n in names}  # build all before swapping
    for name, layer in new.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    return names
