"""The example tensors the course quantizes: synthetic ones with a known shape of distribution, and real MiniLM ones.

    gaussian           x ~ N(0, 1)                              symmetric around 0
    relu               max(x, 0), x ~ N(0, 1)                   non-negative, like ReLU outputs
    outliers           N(0, 1) plus a few entries 10-20x larger  heavy-tailed, like LLM activations
    correlated_inputs  AR(1) rows: corr(x_j, x_k) = rho^|j-k|   inputs X where GPTQ pays off
    minilm_weight      a real all-MiniLM-L6-v2 weight           (384, 384)
    minilm_activation  a real MiniLM activation (FFN input)     (tokens, 1536)

The MiniLM tensors are loaded once and cached, so a widget switching between sources stays fast.
"""

from __future__ import annotations

import torch

__all__ = ["SAMPLE_TENSORS", "correlated_inputs", "is_ready", "rows_with_ranges", "sample_tensor"]

SAMPLE_TENSORS = ("gaussian", "relu", "outliers", "minilm_weight", "minilm_activation")


def _check_shape2(shape) -> tuple[int, int]:
    if (not isinstance(shape, tuple) or len(shape) != 2
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape)):
        raise ValueError(f"shape must be a tuple of two positive ints such as (256, 512), got {shape!r}")
    return shape


_LOADED: dict[str, torch.Tensor] = {}  # the MiniLM sample tensors loaded so far, by name


def _minilm(name: str) -> torch.Tensor:
    from . import models

    if name not in _LOADED:
        _LOADED[name] = models.minilm_weight() if name == "minilm_weight" else models.minilm_activation()
    return _LOADED[name]


def is_ready(name: str) -> bool:
    """True when sample_tensor(name) returns at once: a synthetic tensor, or a MiniLM one already loaded.

    A widget uses it to show "loading MiniLM..." before the first, slow, load.
    """
    if name not in SAMPLE_TENSORS:
        raise ValueError(f"unknown sample tensor {name!r}; choose one of {', '.join(SAMPLE_TENSORS)}")
    return not name.startswith("minilm") or name in _LOADED


def sample_tensor(name: str, shape: tuple[int, int] = (256, 512), seed: int = 0) -> torch.Tensor:
    """A float32 example tensor by name (see the module docstring); `shape` and `seed` apply to the synthetic ones.

    Shapes: synthetic -> `shape`; minilm_weight -> (384, 384); minilm_activation -> (tokens, 1536).
    """
    if name not in SAMPLE_TENSORS:
        raise ValueError(f"unknown sample tensor {name!r}; choose one of {', '.join(SAMPLE_TENSORS)}")
    if name.startswith("minilm"):
        return _minilm(name).clone()
    rows, cols = _check_shape2(shape)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen)  # (rows, cols)
    if name == "relu":
        return x.clamp(min=0)
    if name == "outliers":
        n_out = max(1, x.numel() // 4096)
        where = torch.randperm(x.numel(), generator=gen)[:n_out]
        size = 10 + 10 * torch.rand(n_out, generator=gen)
        sign = torch.where(torch.rand(n_out, generator=gen) < 0.5, -1.0, 1.0)
        x.view(-1)[where] = sign * size  # flat view (rows * cols,)
    return x


def rows_with_ranges(rows: int = 64, cols: int = 256, ratio: float = 100.0, seed: int = 0) -> torch.Tensor:
    """A weight (rows, cols) of Gaussian rows whose standard deviations grow geometrically from 1 to `ratio`.

    Row i has std ratio^(i / (rows - 1)), so the largest row's range is about `ratio` times the smallest's:
    the case where one scale for the whole tensor wastes most codes on the small rows.
    Shapes: -> (rows, cols).
    """
    rows, cols = _check_shape2((rows, cols))
    if rows < 2:
        raise ValueError(f"rows must be at least 2, got {rows}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio >= 1:
        raise ValueError(f"ratio must be a number >= 1, got {ratio!r}")
    gen = torch.Generator().manual_seed(seed)
    std = float(ratio) ** (torch.arange(rows) / (rows - 1))  # (rows,)
    return torch.randn(rows, cols, generator=gen) * std[:, None]  # (rows, cols)


def correlated_inputs(tokens: int = 2048, features: int = 512, rho: float = 0.9, seed: int = 0) -> torch.Tensor:
    """Inputs X (tokens, features) whose neighbouring features are correlated: each row is an AR(1) sequence.

    x_0 = e_0,  x_k = rho * x_(k-1) + sqrt(1 - rho^2) * e_k,  e ~ N(0, 1): unit variance, corr(x_j, x_k) = rho^|j-k|.
    The case where GPTQ's error feedback pays: rounding errors can be cancelled by neighbouring columns.
    Shapes: -> (tokens, features).
    """
    tokens, features = _check_shape2((tokens, features))
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not -1 < rho < 1:
        raise ValueError(f"rho must be a number strictly between -1 and 1, got {rho!r}")
    e = torch.randn(tokens, features, generator=torch.Generator().manual_seed(seed))  # (tokens, features)
    X = torch.empty_like(e)
    X[:, 0] = e[:, 0]
    for k in range(1, features):
        X[:, k] = rho * X[:, k - 1] + (1 - rho ** 2) ** 0.5 * e[:, k]
    return X
