"""Run calibration batches through a model and capture the inputs X of chosen Linear layers.

    batches = check_batches(calibration)                  # a list: sequential methods run it more than once
    X = capture_inputs(model, ["0", "2"], batches)        # {name: X (tokens, in) float32}

Each batch runs as `model(**batch)` when it is a dict of keyword inputs (a tokenizer's output), else as
`model(X)` for a tensor X or an (X, y) tuple. A forward hook on every chosen layer flattens its input to
(tokens, in); once every chosen layer has run for a batch, the rest of the forward pass is skipped, so
capturing the first block of a deep model costs a fraction of a full pass. Padding tokens are dropped:
when a dict batch carries an `attention_mask` (batch, seq) and a layer's input is (batch, seq, in), only the
rows where the mask is 1 are kept, so a padded batch calibrates on its real tokens only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..core.validation import check_bool, check_module, check_names

__all__ = ["attention_mask", "capture_inputs", "check_batches", "first_tensor", "run_batch"]


def first_tensor(value, what: str) -> torch.Tensor:
    """The tensor itself, or the first element of a tuple / list such as (X, y) or a hook's args."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a tensor or a tuple whose first element is a tensor, got "
                        f"{type(value).__name__}")
    return value


def run_batch(model: nn.Module, batch):
    """model(**batch) for a dict of keyword inputs, else model(X) for a tensor X or an (X, y) tuple."""
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(first_tensor(batch, "each batch"))


def _vocabulary_size(model) -> int | None:
    """The number of rows of the model's input embedding (a Hugging Face model's `get_input_embeddings()`)."""
    embeddings = getattr(model, "get_input_embeddings", None)
    try:
        embedding = embeddings() if callable(embeddings) else None
    except (NotImplementedError, AttributeError):
        return None
    return getattr(embedding, "num_embeddings", None)


def check_batches(calibration, what: str = "calibration", model: nn.Module | None = None) -> list:
    """The batches of an iterable as a list, each checked before any work is done; raise for a bad one.

    Refused: a single tensor or dict (not an iterable of batches), no batch, an empty batch, and, for dict batches
    with `input_ids`, ids that are not integers or lie outside the model's vocabulary (when `model` is given and
    has an input embedding).
    """
    if isinstance(calibration, (torch.Tensor, Mapping, str, bytes)) or not isinstance(calibration, Iterable):
        raise TypeError(f"{what} must be an iterable of batches, for example X.split(32) or [tokenizer(...)], "
                        f"not {type(calibration).__name__}")
    batches = list(calibration)
    if not batches:
        raise ValueError(f"{what} is empty; it needs at least one batch")
    vocabulary = None if model is None else _vocabulary_size(check_module(model))
    for index, batch in enumerate(batches):
        if isinstance(batch, Mapping):
            tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
            if not tensors:
                raise TypeError(f"{what} batch {index} is a dict without tensors; pass a tokenizer's output "
                                "(return_tensors='pt')")
            ids = batch.get("input_ids")
            if isinstance(ids, torch.Tensor):
                if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
                    raise TypeError(f"{what} batch {index}: input_ids must be integer token ids, got {ids.dtype}")
                if ids.numel() == 0:
                    raise ValueError(f"{what} batch {index} has no tokens (input_ids of shape {tuple(ids.shape)})")
                low, high = int(ids.min()), int(ids.max())
                if low < 0 or (vocabulary is not None and high >= vocabulary):
                    raise ValueError(f"{what} batch {index}: token ids must lie in [0, {vocabulary}) (the model's "
                                     f"vocabulary), got ids from {low} to {high}")
        else:
            x = first_tensor(batch, f"{what} batch {index}")
            if x.numel() == 0:
                raise ValueError(f"{what} batch {index} is empty (shape {tuple(x.shape)})")
    return batches


def attention_mask(batch) -> torch.Tensor | None:
    """A dict batch's `attention_mask` (batch, seq) as bool, else None (a tensor batch has no padding)."""
    if not isinstance(batch, (Mapping, torch.Tensor, tuple, list)):
        raise TypeError(f"batch must be a dict of model inputs, a tensor or an (X, y) tuple, got "
                        f"{type(batch).__name__}")
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    return mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


class _AllCaptured(Exception):
    """Raised by the last hook of a batch to skip the rest of the forward pass."""


@torch.no_grad()
def capture_inputs(model: nn.Module, names, batches: list, progress: bool = False, run=run_batch,
                   masks=None) -> dict[str, torch.Tensor]:
    """The inputs every layer in `names` receives over `batches`, each flattened to (tokens, in) float32.

    run(model, batch) runs one batch (default `run_batch`); masks, one per batch, default to each batch's
    attention_mask (see `block_inputs`, which feeds one block its cached inputs).

    The model runs in eval mode under torch.no_grad(); its mode is restored and the hooks removed, even on error.

    Shapes: batches as the model expects -> {name: X (sum of tokens over batches, in)}.
    """
    from tqdm.auto import tqdm

    modules = dict(check_module(model).named_modules())
    names = check_names(names, model)
    if not names:
        raise ValueError("names is empty; pass the module names whose inputs to capture")
    check_bool(progress, "progress")
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    pending: set[str] = set()
    mask: list[torch.Tensor | None] = [None]  # the current batch's attention_mask, (batch, seq) bool

    def hook_for(name):
        def hook(module, args):
            x = first_tensor(args, f"the input of {name}")
            if name in pending:
                keep = mask[0]
                if keep is not None and x.shape[:-1] == keep.shape:
                    x = x[keep.to(x.device)]  # (real tokens, in): padding dropped
                seen[name].append(x.detach().reshape(-1, x.shape[-1]).float())  # (tokens, in)
                pending.discard(name)
            if not pending:
                raise _AllCaptured
        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        for index, batch in enumerate(tqdm(batches, disable=not progress, desc="capture")):
            pending.update(names)
            mask[0] = attention_mask(batch) if masks is None else masks[index]
            try:
                run(model, batch)
            except _AllCaptured:
                pass
            if pending:
                raise ValueError(f"the layers {sorted(pending)} never ran on a calibration batch; "
                                 "exclude them or check the batches")
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {n: torch.cat(xs) for n, xs in seen.items()}
