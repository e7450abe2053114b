"""AWQ, Activation-aware Weight Quantization (Lin et al. 2024, arXiv:2306.00978): protect the salient input channels.

Objective: s* = argmin over s of || X W^T - X (Q(W diag(s)) diag(s)^-1)^T ||^2. Scaling an input channel up
before rounding shrinks its relative rounding error, and the channels that matter are those with large
activations. The search space is one exponent alpha (llm-awq auto_scale):

    s = mean_tokens |X| ^ alpha,  normalised s / sqrt(max(s) * min(s)),  alpha in 0, 1/n_grid, ..., (n_grid-1)/n_grid

then, optionally (llm-awq auto_clip), each group's range is shrunk to max |W'| * (1 - i / n_grid), i < n_grid / 2,
choosing per output row and group the shrink with the smallest error of that group's part of the output.
Simplified: the grid is qlearn's min-max RTN grid. The scale search scores its loss on at most 512 evenly spaced
calibration tokens (mean|X| uses every token). The clip search scores every token at no extra cost: a group's
error is d C d^T with C the group's g x g block of X^T X / tokens (the reference samples 512 tokens for it). Both
keep a CPU run of a whole LLM within a minute.

Model level (`quantize_model(model, method="awq", calibration=batches)`): `prepare` searches one s per
(previous module, [layers]) pair that reads one input (folding.find_pairs: a norm before q/k/v or gate/up,
v_proj before o_proj, up_proj before down_proj) on the concatenated weights of its layers, folds 1/s into the
previous module and s into the layers (folding.fold), and checks that the float model's output did not change
(folding.check_unchanged, at a tolerance that follows the model's dtype; everything is undone if it did). The
layers are then quantized by clip search and rounding on inputs captured after the fold, into QuantLinear. A
layer in no pair (a post-LN encoder's q/k/v, whose LayerNorm output is also the residual; a layer after a GELU)
gets its own s and keeps it: an AWQLinear computes Q(W diag(s)) (X / s), storing s as a float32 buffer (in,),
counted by model_size_bytes. Simplified: the loss is the pair's Linear outputs (llm-awq scores the whole attention
or MLP block), and as there, inputs come from the float (folded) model, not the quantized one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..core.granularity import PerChannel, PerGroup
from ..core.primitives import cast_finite, minmax_params, qrange
from ..core.validation import (
    check_bits,
    check_bool,
    check_group_size,
    check_inputs,
    check_module,
    check_names,
    check_positive_int,
    check_same_shape,
    check_weight,
)
from ..inference import serialize
from ..inference.block_inputs import calibration_blocks
from ..inference.capture import check_batches, run_batch
from ..inference.linear import QuantLinear
from ..inference.registry import QuantMethod, get_method, register_method
from . import rtn
from .folding import FoldState, check_pairs, check_unchanged, find_pairs, fold, model_output
from .weight import UniformWeight, granularity_for, group_size_of, uniform_layer

__all__ = ["CLIP_TOKENS", "AWQLinear", "AWQWeight", "output_mse", "prepare", "quantize_layer", "quantize_weight"]

CLIP_TOKENS = 512


@dataclass(frozen=True, eq=False)
class AWQWeight(UniformWeight):
    """Codes of W diag(s) on the RTN grid; W_hat = scale * (W_q - zero_point) / s.

    Shapes: input_scale s (in,) float32; alphas and losses (n_grid,): the output MSE of each alpha.
    """

    input_scale: torch.Tensor | None = None
    alpha: float | None = None
    alphas: tuple[float, ...] = ()
    losses: tuple[float, ...] = ()

    def stored(self) -> dict[str, torch.Tensor]:
        return {**super().stored(), "input_scale": self.input_scale}

    def dequantize(self) -> torch.Tensor:
        W_hat = UniformWeight(self.shape, torch.float32, self.W_q, self.scale, self.zero_point, self.bits,
                              self.granularity).dequantize() / self.input_scale  # (out, in) / (in,)
        return cast_finite(W_hat, self.dtype)


def output_mse(X: torch.Tensor, W: torch.Tensor, W_hat: torch.Tensor) -> float:
    """mean((X W^T - X W_hat^T)^2). Shapes: X (tokens, in), W and W_hat (out, in) -> float."""
    check_weight(W)
    check_weight(W_hat, "W_hat")
    check_same_shape(W, W_hat, ("W", "W_hat"))
    check_inputs(X, W, required=True, method="output_mse")
    error = _output_mse(X.double(), W.double(), W_hat.double())
    if not math.isfinite(error):
        raise ValueError("the output error overflows float64: X's values are too large; rescale X")
    return error


def _output_mse(X: torch.Tensor, W: torch.Tensor, W_hat: torch.Tensor) -> float:
    return float((X @ (W - W_hat).T).square().mean())


def _search_tokens(X: torch.Tensor) -> torch.Tensor:
    """At most about CLIP_TOKENS evenly spaced rows of X, the tokens the scale search scores.

    Shapes: (tokens, in) -> (<= ~512, in).
    """
    return X[:: max(1, X.shape[0] // CLIP_TOKENS)]


def _round_groups(Wg: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Min-max round to nearest of each group, the RTN grid (rtn.quantize_weight's formulas), unchecked.

    W_hat = scale * (clamp(round(W / scale) + zero_point, qmin, qmax) - zero_point), per (row, group)
    Shapes: Wg (out, groups, g) float32 -> W_hat (out, groups, g).
    """
    qmin, qmax = qrange(bits)
    scale, zero = minmax_params(Wg, -1, bits, symmetric)  # (out, groups, 1) each
    return scale * ((Wg / scale).round() + zero).clamp(qmin, qmax).sub(zero)


def _group_gram(X: torch.Tensor, g: int) -> torch.Tensor:
    """The diagonal g x g blocks of X^T X / tokens: C[k] = X_k^T X_k / tokens for the k-th group of columns.

    Then mean_tokens (X_k . d)^2 = d C[k] d^T for any d (g,), exactly, whatever the number of tokens.
    Shapes: X (tokens, in) -> C (in / g, g, g).
    """
    Xg = X.float().reshape(X.shape[0], -1, g).transpose(0, 1)  # (groups, tokens, g)
    return Xg.transpose(1, 2) @ Xg / X.shape[0]


def _search_clip(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                n_grid: int) -> torch.Tensor:
    """Per (row, group) the clip value max |W| * (1 - i / n_grid), i < n_grid / 2, with the least group output error.

    err[row, group] = mean_tokens (X_group . (Q(clamp(W_group, -c, c)) - W_group))^2 = d C[group] d^T
    over every calibration token, through the group's Gram block C (_group_gram; d = Q(clamp(W)) - W).
    Shapes: W (out, in), X (tokens, in) -> clip (out, in / g, 1), or (out, 1, 1) per row.
    """
    g = W.shape[1] if group_size is None else group_size
    C = _group_gram(X, g)  # (groups, g, g)
    Wg = W.float().reshape(W.shape[0], -1, g)  # (out, groups, g)
    full = Wg.abs().amax(dim=-1, keepdim=True)  # (out, groups, 1)
    best, best_err = full, None
    for i in range(int(0.5 * n_grid)):
        c = full * (1 - i / n_grid)
        dW = (_round_groups(torch.maximum(torch.minimum(Wg, c), -c), bits, symmetric) - Wg).transpose(0, 1)
        err = ((dW @ C) * dW).sum(dim=-1).T[..., None]  # (groups, out, g) -> (out, groups, 1)
        if best_err is None:
            best_err = err
        better = err < best_err
        best, best_err = torch.where(better, c, best), torch.where(better, err, best_err)
    return best


def _search_scale(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                 n_grid: int) -> tuple[torch.Tensor, float, tuple[float, ...], tuple[float, ...]]:
    """The grid search over alpha: s = mean_tokens|X|^alpha, normalised, with the least output MSE.

    loss(alpha) = mean((X W^T - X (Q(W diag s) diag(s)^-1)^T)^2), on at most ~512 tokens (_search_tokens)
    Shapes: W (out, in) float32, X (tokens, in) float32 -> s (in,), alpha, alphas (n_grid,), losses (n_grid,).
    """
    g = W.shape[1] if group_size is None else group_size
    x_mean = X.abs().mean(dim=0)  # (in,) activation magnitude per input channel, over every token
    X = _search_tokens(X)  # (<= ~512, in) the tokens the loss is scored on

    def scale_for(alpha):
        s = x_mean.pow(alpha).clamp(min=1e-4)
        return s / (s.max() * s.min()).sqrt()  # (in,)

    alphas = tuple(k / n_grid for k in range(n_grid))
    losses = []
    for alpha in alphas:
        s = scale_for(alpha)
        W_hat = _round_groups((W * s).reshape(W.shape[0], -1, g), bits, symmetric).reshape(W.shape) / s  # (out, in)
        losses.append(_output_mse(X, W, W_hat))
    best = min(range(n_grid), key=losses.__getitem__)
    return scale_for(alphas[best]), alphas[best], alphas, tuple(losses)


def _clip_and_round(W_s: torch.Tensor, X_s: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                   n_grid: int, clip: bool) -> UniformWeight:
    """Round the scaled weight W_s = W diag(s) to the RTN grid, after the clip search on the scaled inputs X / s.

    Shapes: W_s (out, in), X_s (tokens, in) -> UniformWeight of W_s (out, in).
    """
    if clip:
        c = _search_clip(W_s, X_s, bits, group_size, symmetric, n_grid)  # (out, groups, 1)
        g = W_s.shape[1] if group_size is None else group_size
        Wg = W_s.reshape(W_s.shape[0], -1, g)  # (out, groups, g)
        W_s = torch.maximum(torch.minimum(Wg, c), -c).reshape(W_s.shape)  # (out, in)
    return rtn.quantize_weight(W_s, bits=bits, group_size=group_size, symmetric=symmetric)


def quantize_weight(W: torch.Tensor, X: torch.Tensor, bits: int = 4, group_size: int | None = 128, n_grid: int = 20,
                    clip: bool = True, symmetric: bool = False) -> AWQWeight:
    """AWQ: grid-search alpha for the input scale s = mean|X|^alpha, optionally search clips, quantize W diag(s).

    alpha* = argmin_alpha mean((X W^T - X (Q(W diag s) diag(s)^-1)^T)^2);  W_hat = Q(clip(W diag s*)) diag(s*)^-1

    Shapes: W (out, in); X (tokens, in), needed -> AWQWeight of W (out, in), input_scale (in,).
    """
    check_weight(W)
    check_inputs(X, W, required=True, method="awq")
    check_bits(bits)
    granularity = granularity_for(check_group_size(group_size, W.shape[1]))
    check_positive_int(n_grid, "n_grid")
    check_bool(clip, "clip")
    check_bool(symmetric, "symmetric")
    W32, X = W.detach().float(), X.detach().to(W.device).float()
    s, alpha, alphas, losses = _search_scale(W32, X, bits, group_size, symmetric, n_grid)
    grid = _clip_and_round(W32 * s, X / s, bits, group_size, symmetric, n_grid, clip)
    return AWQWeight(shape=W.shape, dtype=W.dtype, W_q=grid.W_q, scale=grid.scale, zero_point=grid.zero_point,
                     bits=bits, granularity=granularity, input_scale=s, alpha=alpha, alphas=alphas, losses=losses)


class AWQLinear(QuantLinear):
    """QuantLinear(x / input_scale): Y = Q(W diag(s)) (X / s) + b, for a layer where no module before can take 1/s.

    The constructor takes QuantLinear's arguments; input_scale starts at 1.
    Shapes: X (..., in) -> Y (..., out); input_scale (in,) float32.
    """

    def __init__(self, in_features: int, out_features: int, *args, device=None, **kwargs):
        super().__init__(in_features, out_features, *args, device=device, **kwargs)
        self.register_buffer("input_scale", torch.ones(in_features, dtype=torch.float32, device=device))

    @property
    def weight(self) -> torch.Tensor:
        """The effective W_hat diag(s)^-1 (out, in): what the layer applies to an unscaled input."""
        return cast_finite(self.dequantized_weight().float() / self.input_scale, self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0 \
                or x.shape[-1] != self.in_features:
            return super().forward(x)  # raises QuantLinear's error for the input
        return super().forward(x / self.input_scale.to(x.dtype))


# ---- model level ---------------------------------------------------------------------------------------------

def prepare(model: nn.Module, batches, layer_names, bits, granularity, symmetric, pairs=None,
            n_grid: int = 20) -> FoldState:
    """Search one s per (previous, [layers]) pair on the float model's inputs and fold it; check the output.

    s = _search_scale(concatenated weights of the layers, X of the pair);  folding.fold(previous, layers, s)
    pairs=None finds them from the names (`folding.find_pairs`); pairs=[] folds nothing (every layer keeps its s).
    """
    check_module(model)
    layer_names = check_names(layer_names, model, "layer_names")
    get_method("awq").check(bits, granularity, check_bool(symmetric, "symmetric"), {})
    batches = check_batches(batches, model=model)
    check_positive_int(n_grid, "n_grid")
    pairs = find_pairs(model, layer_names) if pairs is None else \
        check_pairs(model, pairs, allow_none=False, targets=set(layer_names))
    state = FoldState()
    if not pairs:
        return state
    group_size = group_size_of(granularity)
    reference = model_output(run_batch(model, batches[0]))
    by_first = {layers[0]: (previous, layers) for previous, layers in pairs}
    try:
        # folding keeps each block's function, so the next block's inputs are the float ones
        for group, X in calibration_blocks(model, list(by_first), batches):
            for first in group:
                previous, layers = by_first[first]
                W = torch.cat([model.get_submodule(n).weight.detach().float() for n in layers])  # (sum of out, in)
                s, alpha, _, _ = _search_scale(W, X[first].to(W.device), bits, group_size, symmetric, n_grid)
                fold(model, previous, layers, s, state)
                state.notes.update({n: f"input scale (alpha={alpha:.2f}) folded into {previous}" for n in layers})
            del X
        dtype = next(model.parameters()).dtype
        check_unchanged(reference, model_output(run_batch(model, batches[0])), dtype, "folding the AWQ scales")
    except BaseException:
        state.undo()
        raise
    return state


def quantize_layer(name, linear, X, bits, granularity, symmetric, n_grid: int = 20, clip: bool = True, state=None,
                   activations=None, kernel: str = "auto") -> QuantLinear:
    """A folded layer (W already W diag s, X already X / s): clip search and rounding, a QuantLinear.
    Any other layer: the whole AWQ search on its own X, an AWQLinear that keeps s.

    Shapes: linear.weight (out, in), X (tokens, in) -> the layer's buffers (see QuantLinear, AWQLinear).
    """
    get_method("awq").check_layer(linear, X, bits, granularity, symmetric)
    check_positive_int(n_grid, "n_grid")
    check_bool(clip, "clip")
    if state is not None and not isinstance(state, FoldState):
        raise TypeError(f"state must be the FoldState that awq.prepare returned, or None; got {type(state).__name__}")
    group_size = group_size_of(granularity)
    W, X = linear.weight.detach().float(), X.to(linear.weight.device)
    if state is not None and name in state.folded:
        check_weight(W)
        grid = _clip_and_round(W, X.float(), bits, group_size, symmetric, n_grid, clip)
        return uniform_layer(linear, grid, activations, kernel)
    qw = quantize_weight(W, X, bits=bits, group_size=group_size, n_grid=n_grid, clip=clip, symmetric=symmetric)
    layer = uniform_layer(linear, qw, activations, kernel, cls=AWQLinear)
    layer.input_scale.copy_(qw.input_scale)
    if state is not None:
        state.notes[name] = f"input scale (alpha={qw.alpha:.2f}) kept on the layer (no module before it to fold into)"
    return layer


register_method(QuantMethod("awq", quantize_layer, needs_calibration=True, prepare=prepare, symmetric=(False, True),
                            granularities=(PerChannel, PerGroup),
                            description="AWQ: input scales folded before the layer where possible"), replace=True)
serialize.register_layer_type(AWQLinear)
