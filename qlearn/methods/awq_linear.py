"""AWQLinear: a QuantLinear that keeps AWQ's input scale s, for a layer where no module before can take 1/s.

    Y = Q(W diag(s)) (X / s) + b          the codes are those of W diag(s); the input is divided by s

Where the module before a layer feeds only the scaled layers (a pre-LN norm before q/k/v, v_proj before
o_proj), `awq_model` folds 1/s into it and the layer is a plain QuantLinear. In a post-LN encoder (BERT,
MiniLM) the LayerNorm output is also the residual, and after a GELU nothing is linear, so the layer keeps
s as a float32 buffer (in,): 4 bytes per input channel, counted by model_size_bytes.

Shapes: X (..., in) -> Y (..., out); input_scale (in,) float32.
"""

from __future__ import annotations

import torch

from ..inference.linear import QuantLinear


class AWQLinear(QuantLinear):
    """QuantLinear(x / input_scale): the constructor takes QuantLinear's arguments; input_scale starts at 1."""

    def __init__(self, in_features: int, out_features: int, *args, device=None, **kwargs):
        super().__init__(in_features, out_features, *args, device=device, **kwargs)
        self.register_buffer("input_scale", torch.ones(in_features, dtype=torch.float32, device=device))

    @property
    def weight(self) -> torch.Tensor:
        """The effective W_hat diag(s)^-1 (out, in): what the layer applies to an unscaled input."""
        return (self.dequantized_weight().float() / self.input_scale).to(self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return super().forward(x)  # raises the QuantLinear error
        return super().forward(x / self.input_scale.to(x.dtype))
