"""Seeded toy layers shared by the method tests: correlated inputs, orthogonal inputs, outlier channels."""

import torch

from qlearn.data import tensors


def ar1_inputs(tokens: int, features: int, rho: float = 0.9, seed: int = 0) -> torch.Tensor:
    """X (tokens, features): each row an AR(1) sequence with neighbour correlation rho."""
    return tensors.correlated_inputs(tokens, features, rho, seed)


def orthogonal_inputs(tokens: int, features: int, log2_norms=None) -> torch.Tensor:
    """X (tokens, features) with exactly orthogonal columns: Hadamard columns scaled by 2^log2_norms.

    Every entry is +-2^k, so X^T X = tokens * diag(4^log2_norms) holds exactly in float32 (no rounding);
    tokens must be a power of two >= features.
    """
    H = torch.ones(1, 1)
    while H.shape[0] < tokens:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)  # Sylvester: (2k, 2k)
    X = H[:tokens, :features]  # (tokens, features)
    return X if log2_norms is None else X * torch.exp2(log2_norms.float())


def output_error(X: torch.Tensor, W: torch.Tensor, W_hat: torch.Tensor) -> float:
    """|| X W^T - X W_hat^T ||_F."""
    return float((X @ (W - W_hat).T).norm())
