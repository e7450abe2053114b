"""AWQ, Activation-aware Weight Quantization (Lin et al. 2024, arXiv:2306.00978): protect the salient input channels.

Objective: s* = argmin over s of || X W^T - X (Q(W diag(s)) diag(s)^-1)^T ||^2. Scaling an input channel up
before rounding shrinks its relative rounding error, and the channels that matter are those with large
activations. The search space is one exponent alpha (llm-awq auto_scale):

    s = mean_tokens |X| ^ alpha,  normalised s / sqrt(max(s) * min(s)),  alpha in 0, 1/n_grid, ..., (n_grid-1)/n_grid

then, optionally (llm-awq auto_clip), each group's range is shrunk to max |W'| * (1 - i / n_grid), i < n_grid / 2,
choosing per output row and group the shrink with the smallest error of that group's part of the output.
A model-level pass folds diag(s)^-1 into the layer before (a LayerNorm or Linear); until then the layer
keeps s, so `input_scale` is stored and counted in `nbytes`. Simplified: one Linear at a time (the paper
searches per block of layers sharing an input), and the grid is qlearn's min-max RTN grid. The scale
search scores its loss on at most 512 evenly spaced calibration tokens (mean|X| uses every token). The
clip search scores every token at no extra cost: a group's error is d C d^T with C the group's g x g
block of X^T X / tokens (the reference samples 512 tokens for it). Both keep a CPU run of a whole LLM
within a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.validation import check_bits, check_bool
from ..core.primitives import minmax_params, qrange
from . import rtn
from ._checks import check_group_size, check_inputs, check_positive_int, check_weight
from .weight import UniformWeight, granularity_for

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
        W_hat = super().dequantize().float() / self.input_scale  # (out, in) / (in,)
        return W_hat.to(self.dtype)


def output_mse(X: torch.Tensor, W: torch.Tensor, W_hat: torch.Tensor) -> float:
    """mean((X W^T - X W_hat^T)^2). Shapes: X (tokens, in), W and W_hat (out, in) -> float."""
    return float((X @ (W - W_hat).T).square().mean())


def search_tokens(X: torch.Tensor) -> torch.Tensor:
    """At most about CLIP_TOKENS evenly spaced rows of X, the tokens the scale search scores. Shapes: (tokens, in) -> (<= ~512, in)."""
    return X[:: max(1, X.shape[0] // CLIP_TOKENS)]


def round_groups(Wg: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    """Min-max round to nearest of each group, the RTN grid (rtn.quantize_weight's formulas), unchecked.

    W_hat = scale * (clamp(round(W / scale) + zero_point, qmin, qmax) - zero_point), per (row, group)
    Shapes: Wg (out, groups, g) float32 -> W_hat (out, groups, g).
    """
    if not isinstance(Wg, torch.Tensor) or Wg.ndim != 3:
        raise ValueError(f"Wg must be a (out, groups, g) tensor, got "
                         f"{tuple(Wg.shape) if isinstance(Wg, torch.Tensor) else type(Wg).__name__}")
    qmin, qmax = qrange(bits)
    scale, zero = minmax_params(Wg, -1, bits, symmetric)  # (out, groups, 1) each
    return scale * ((Wg / scale).round() + zero).clamp(qmin, qmax).sub(zero)


def group_gram(X: torch.Tensor, g: int) -> torch.Tensor:
    """The diagonal g x g blocks of X^T X / tokens: C[k] = X_k^T X_k / tokens for the k-th group of columns.

    Then mean_tokens (X_k . d)^2 = d C[k] d^T for any d (g,), exactly, whatever the number of tokens.
    Shapes: X (tokens, in) -> C (in / g, g, g).
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or not X.is_floating_point() or X.shape[0] == 0:
        raise ValueError("X must be a non-empty (tokens, in) float tensor")
    check_positive_int(g, "g")
    if X.shape[1] % g:
        raise ValueError(f"the group size g={g} must divide X's {X.shape[1]} columns")
    Xg = X.float().reshape(X.shape[0], -1, g).transpose(0, 1)  # (groups, tokens, g)
    return Xg.transpose(1, 2) @ Xg / X.shape[0]


def search_clip(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                n_grid: int) -> torch.Tensor:
    """Per (row, group) the clip value max |W| * (1 - i / n_grid), i < n_grid / 2, with the least group output error.

    err[row, group] = mean_tokens (X_group . (Q(clamp(W_group, -c, c)) - W_group))^2 = d C[group] d^T
    over every calibration token, through the group's Gram block C (group_gram; d = Q(clamp(W)) - W).
    Shapes: W (out, in), X (tokens, in) -> clip (out, in / g, 1), or (out, 1, 1) per row.
    """
    g = W.shape[1] if group_size is None else group_size
    C = group_gram(X, g)  # (groups, g, g)
    Wg = W.float().reshape(W.shape[0], -1, g)  # (out, groups, g)
    full = Wg.abs().amax(dim=-1, keepdim=True)  # (out, groups, 1)
    best, best_err = full, None
    for i in range(int(0.5 * n_grid)):
        c = full * (1 - i / n_grid)
        dW = (round_groups(torch.maximum(torch.minimum(Wg, c), -c), bits, symmetric) - Wg).transpose(0, 1)
        err = ((dW @ C) * dW).sum(dim=-1).T[..., None]  # (groups, out, g) -> (out, groups, 1)
        if best_err is None:
            best_err = err
        better = err < best_err
        best, best_err = torch.where(better, c, best), torch.where(better, err, best_err)
    return best


def search_scale(W: torch.Tensor, X: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                 n_grid: int) -> tuple[torch.Tensor, float, tuple[float, ...], tuple[float, ...]]:
    """The grid search over alpha: s = mean_tokens|X|^alpha, normalised, with the least output MSE.

    loss(alpha) = mean((X W^T - X (Q(W diag s) diag(s)^-1)^T)^2), on at most ~512 tokens (search_tokens)
    Shapes: W (out, in) float32, X (tokens, in) float32 -> s (in,), alpha, alphas (n_grid,), losses (n_grid,).
    """
    g = W.shape[1] if group_size is None else group_size
    x_mean = X.abs().mean(dim=0)  # (in,) activation magnitude per input channel, over every token
    X = search_tokens(X)  # (<= ~512, in) the tokens the loss is scored on

    def scale_for(alpha):
        s = x_mean.pow(alpha).clamp(min=1e-4)
        return s / (s.max() * s.min()).sqrt()  # (in,)

    alphas = tuple(k / n_grid for k in range(n_grid))
    losses = []
    for alpha in alphas:
        s = scale_for(alpha)
        W_hat = round_groups((W * s).reshape(W.shape[0], -1, g), bits, symmetric).reshape(W.shape) / s  # (out, in)
        losses.append(output_mse(X, W, W_hat))
    best = min(range(n_grid), key=losses.__getitem__)
    return scale_for(alphas[best]), alphas[best], alphas, tuple(losses)


def clip_and_round(W_s: torch.Tensor, X_s: torch.Tensor, bits: int, group_size: int | None, symmetric: bool,
                   n_grid: int, clip: bool) -> UniformWeight:
    """Round the scaled weight W_s = W diag(s) to the RTN grid, after the clip search on the scaled inputs X / s.

    Shapes: W_s (out, in), X_s (tokens, in) -> UniformWeight of W_s (out, in).
    """
    if clip:
        c = search_clip(W_s, X_s, bits, group_size, symmetric, n_grid)  # (out, groups, 1)
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
    s, alpha, alphas, losses = search_scale(W32, X, bits, group_size, symmetric, n_grid)
    grid = clip_and_round(W32 * s, X / s, bits, group_size, symmetric, n_grid, clip)
    return AWQWeight(shape=W.shape, dtype=W.dtype, W_q=grid.W_q, scale=grid.scale, zero_point=grid.zero_point,
                     bits=bits, granularity=granularity, input_scale=s, alpha=alpha, alphas=alphas, losses=losses)
