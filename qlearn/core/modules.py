"""Replace a submodule by name: the one way every part of qlearn swaps a layer.

    old = replace_module(model, "model.layers.0.mlp.up_proj", new_layer)

torch's own `nn.Module.set_submodule` (the newest releases) does the same; this also returns the module that was
there, so a caller can put it back, and raises ValueError for a name the model does not have.
"""

from __future__ import annotations

from torch import nn

from .validation import check_module

__all__ = ["replace_module"]


def replace_module(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Put `module` at the dotted `name` inside `model` (which must already hold a module there); return the old one."""
    check_module(model)
    check_module(module, "module")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be the dotted name of a submodule, such as 'layers.0.fc', got {name!r}")
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name)
        old = parent.get_submodule(child)
    except AttributeError as err:
        raise ValueError(f"the model has no submodule named {name!r}") from err
    setattr(parent, child, module)
    return old
