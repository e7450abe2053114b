"""Rotations that tame outliers: QuaRot (Ashkboos et al. 2024, arXiv:2404.00456), with SpinQuant's names R1 and R4.

An orthogonal Q (Q Q^T = I) changes nothing in exact arithmetic: x W^T = (x Q)(W Q)^T. Rotating the residual
stream of a pre-norm transformer by Q spreads each outlier channel over all channels, so the hidden states and the
weights that read them have a flatter distribution to quantize, while the model computes the same function:

    objective: the same logits, f_rotated(x) = f(x), with flatter hidden states h Q and weights W Q

    RMSNorm gains g folded into the linears that read the norm:   W <- W diag(g),  g <- 1
      (RMSNorm(x Q) = RMSNorm(x) Q because ||x Q|| = ||x||; a gain != 1 would not commute with Q)
    R1, the residual stream:   E <- E Q (embeddings),   W_in <- W_in Q  (q, k, v, gate, up, lm_head)
                               W_out <- Q^T W_out, b_out <- b_out Q   (o_proj, down_proj write into the stream)
    R4, online, before down_proj:   x <- x H (at run time),  W_down <- W_down H   (so x H (W_down H)^T = x W_down^T)

Q is an orthonormal Walsh-Hadamard matrix (Sylvester: H_2n = [[H_n, H_n], [H_n, -H_n]] / sqrt(2)), optionally with
random signs (diag(s) H, QuaRot's "random Hadamard"). For widths that are not a power of two it is block-diagonal:
n = m * 2^k uses m blocks of H_(2^k) (SmolLM2: 576 = 9 x 64, 1536 = 3 x 512). A tied output head (SmolLM2's
lm_head shares the embedding) is untied first: with g folded in it is no longer the same matrix.

Which modules play which role is data (`DecoderLayout`; `LLAMA` fits Llama, SmolLM2, Mistral, Qwen2), not
discovered from the model classes. Simplified against QuaRot: no per-head Hadamard on V / O (R2) and no online
Hadamard on the keys (R3, for a quantized KV cache); block-diagonal instead of QuaRot's Hadamard-12/36 products;
rotations are computed in float64 and cast back to the weights' dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..core.validation import check_bool, check_float_tensor, check_module, check_positive_int

__all__ = ["LLAMA", "MAX_HADAMARD", "DecoderLayout", "OnlineHadamard", "hadamard", "hadamard_transform", "rotate_model"]


MAX_HADAMARD = 2 ** 16  # the largest dense matrix hadamard builds: 65536^2 float64 = 32 GiB


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")


def _signs(n: int, seed: int) -> torch.Tensor:
    """The seeded +-1 signs s of diag(s) H. Shapes: -> (n,) float64."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n,), generator=generator, dtype=torch.float64) * 2 - 1


def _block(n: int, block_size) -> int:
    """block_size, checked: a power of two dividing n; None gives the largest power of two dividing n (576 -> 64)."""
    if block_size is None:
        return n & -n
    check_positive_int(block_size, "block_size")
    if block_size & (block_size - 1) or n % block_size:
        raise ValueError(f"block_size must be a power of two that divides n={n} (a Walsh-Hadamard block), got "
                         f"{block_size}; the largest that fits is {n & -n}")
    return block_size


def hadamard(n: int, random_signs: bool = False, seed: int = 0, block_size: int | None = None) -> torch.Tensor:
    """An orthonormal (block-diagonal) Walsh-Hadamard matrix: H H^T = I.

    b = block_size (default: the largest power of two dividing n);  H = blockdiag(H_b, ..., H_b) / sqrt(b);
    random_signs: diag(s) H, s = +-1 (seeded). block_size=32 rotates each MX block on its own (hadamard_mx.py).
    Shapes: -> (n, n) float64.
    """
    check_positive_int(n, "n")
    if n > MAX_HADAMARD:
        raise ValueError(f"n={n} is too large: hadamard(n) is a dense (n, n) float64 matrix (n^2 * 8 bytes), n up to "
                         f"{MAX_HADAMARD}; hadamard_transform(x) multiplies by it without building it")
    check_bool(random_signs, "random_signs")
    _check_seed(seed)
    block = _block(n, block_size)
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < block:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)  # (2k, 2k) Sylvester
    H = torch.block_diag(*[H] * (n // block)) / math.sqrt(block)  # (n, n)
    if random_signs:
        H = _signs(n, seed)[:, None] * H
    return H


def hadamard_transform(x: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """x @ hadamard(n, block_size=block_size) without the matrix: the fast Walsh-Hadamard butterflies, log2(b) passes.

    Each pass pairs the entries h apart inside runs of 2h: (a, c) -> (a + c, a - c), h = 1, 2, 4, ..., b / 2,
    in float32 at least (float16's partial sums would overflow near 65504), rounded back to x's dtype at the end.
    Shapes: x (..., n) -> (..., n), the same dtype.
    """
    check_float_tensor(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have at least one dim (..., n), got a 0-d tensor")
    return _hadamard_transform(x, _block(x.shape[-1], block_size))


def _hadamard_transform(x: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """hadamard_transform without the checks, for the layers' forwards (block: a power of two dividing n)."""
    n = x.shape[-1]
    block = n & -n if block is None else block
    y = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(-1, n // block, block)  # (rows, n / b, b)
    h = 1
    while h < block:
        y = y.reshape(y.shape[0], n // block, block // (2 * h), 2, h)  # (rows, n / b, b / 2h, 2, h)
        y = torch.stack([y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]], dim=-2)
        h *= 2
    return (y.reshape(x.shape) / math.sqrt(block)).to(x.dtype)  # (..., n)


class OnlineHadamard(nn.Module):
    """x -> linear(x H): R4, the Hadamard of the input applied at run time (no stored matrix, no extra bytes).

    Shapes: x (..., in) -> (..., out). `linear` stays an nn.Linear, so quantize_model can replace it.
    """

    def __init__(self, linear: nn.Module):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear (the down_proj to wrap), got {type(linear).__name__}")
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(_hadamard_transform(x))


@dataclass(frozen=True)
class DecoderLayout:
    """Where the rotated modules of a pre-norm decoder live (names relative to the model / to one block)."""

    layers: str = "model.layers"
    embeddings: tuple[str, ...] = ("model.embed_tokens",)
    final_norm: str = "model.norm"
    head: str = "lm_head"
    norm_fuses: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")))
    outputs: tuple[str, ...] = ("self_attn.o_proj", "mlp.down_proj")
    online: str = "mlp.down_proj"

    def __post_init__(self):
        for field in ("layers", "final_norm", "head", "online"):
            _check_name(getattr(self, field), field)
        for field in ("embeddings", "outputs"):
            _check_names(getattr(self, field), field)
        fuses = self.norm_fuses
        if not isinstance(fuses, tuple) or not all(isinstance(f, tuple) and len(f) == 2 for f in fuses):
            raise TypeError(f"norm_fuses must be a tuple of (norm name, tuple of linear names) pairs, got "
                            f"{fuses!r:.80}")
        for norm, linears in fuses:
            _check_name(norm, "a norm_fuses norm")
            _check_names(linears, "a norm_fuses entry's linears")


def _check_name(value, field: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a module name (str), got {type(value).__name__} {value!r:.80}")


def _check_names(value, field: str) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{field} must be a tuple of module names, got {type(value).__name__} {value!r:.80}")
    for name in value:
        _check_name(name, f"each of {field}")


LLAMA = DecoderLayout()


def _set(module: nn.Module, name: str, W: torch.Tensor) -> None:
    """module.<name> <- W (computed in float64), cast to the parameter's dtype, in place."""
    param = getattr(module, name)
    param.data = W.to(param.dtype).contiguous()


def _fold_norm(norm: nn.Module, linears: list[nn.Module]) -> None:
    """W <- W diag(g) for each linear reading the norm; g <- 1."""
    g = norm.weight.detach().double()
    for linear in linears:
        _set(linear, "weight", linear.weight.detach().double() * g)
    norm.weight.data.fill_(1.0)


@torch.no_grad()
def rotate_model(model: nn.Module, layout: DecoderLayout = LLAMA, random_signs: bool = True, seed: int = 0,
                 online_hadamard: bool = True) -> nn.Module:
    """Fold the RMSNorm gains and rotate the residual stream by Q = hadamard(hidden, random_signs, seed), in place.

    With online_hadamard, each down_proj becomes OnlineHadamard(down_proj) with W_down <- W_down H. The model's
    outputs are unchanged up to float rounding (see the module docstring for every step). Returns the model.
    A tied head comes back untied: quantize_model then quantizes it too unless exclude=["lm_head"] (a tied
    head is skipped), so compare rotated and plain models with the head excluded.

    Shapes: hidden states (..., d) -> (..., d) Q; weights keep their shapes.
    """
    check_module(model)
    if not isinstance(layout, DecoderLayout):
        raise TypeError(f"layout must be a DecoderLayout (qlearn.methods.rotation.LLAMA fits Llama-style models), "
                        f"got {type(layout).__name__}")
    check_bool(online_hadamard, "online_hadamard")
    check_bool(random_signs, "random_signs")
    _check_seed(seed)
    try:
        blocks = list(model.get_submodule(layout.layers))
        embeddings = [model.get_submodule(name) for name in layout.embeddings]
        final_norm, head = model.get_submodule(layout.final_norm), model.get_submodule(layout.head)
        for block in blocks:
            for name in [n for norm, names in layout.norm_fuses for n in (norm, *names)] + list(layout.outputs):
                block.get_submodule(name)
        onlines = [block.get_submodule(layout.online) for block in blocks]
    except AttributeError as err:
        raise ValueError(f"the model does not match the layout {layout}: {err}") from err
    if any(type(down) is OnlineHadamard for down in onlines):
        raise ValueError("this model is already rotated (it has OnlineHadamard layers); rotate the original")
    if online_hadamard and not all(isinstance(down, nn.Linear) for down in onlines):
        raise ValueError(f"the layout's online module {layout.online!r} must be an nn.Linear in every block (rotate "
                         "before quantizing)")
    # every matrix first, so that a refusal leaves the model untouched
    Q = hadamard(head.weight.shape[1], random_signs, seed).to(head.weight.device)  # (d, d)
    H = {n: hadamard(n) for n in {down.in_features for down in onlines}} if online_hadamard else {}  # (in, in) each
    if any(head.weight is e.weight for e in embeddings):  # untie: the head gets the final gain, the embedding not
        head.weight = nn.Parameter(head.weight.detach().clone())
        if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            model.config.tie_word_embeddings = False
    for e in embeddings:
        _set(e, "weight", e.weight.detach().double() @ Q)  # (vocab, d) rows rotated
    for block in blocks:
        for norm_name, names in layout.norm_fuses:
            _fold_norm(block.get_submodule(norm_name), [block.get_submodule(n) for n in names])
        for _, names in layout.norm_fuses:
            for name in names:
                linear = block.get_submodule(name)
                _set(linear, "weight", linear.weight.detach().double() @ Q)  # (out, d) reads x Q
        for name in layout.outputs:
            linear = block.get_submodule(name)
            _set(linear, "weight", Q.T @ linear.weight.detach().double())  # (d, in) writes y Q
            if linear.bias is not None:
                _set(linear, "bias", linear.bias.detach().double() @ Q)
        if online_hadamard:
            down = block.get_submodule(layout.online)
            _set(down, "weight", down.weight.detach().double() @ H[down.in_features].to(down.weight.device))
            parent, _, child = layout.online.rpartition(".")
            setattr(block.get_submodule(parent), child, OnlineHadamard(down))
    _fold_norm(final_norm, [head])
    _set(head, "weight", head.weight.detach().double() @ Q)
    return model
