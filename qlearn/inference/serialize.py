"""Save and load a quantized model with safetensors (plain tensors and JSON metadata, never pickle).

    save_quantized(model, "model.safetensors")
    with torch.device("meta"):                      # a skeleton: the architecture, no memory
        skeleton = build_the_float_model()
    model = load_quantized(skeleton, "model.safetensors")

The file holds every parameter and buffer once (tied tensors are stored once and listed as
aliases) and, in its metadata, the type and constructor arguments (`layer.config()`) of each quantized
layer: QuantLinear here, and the method layers (NF4Linear, HQQLinear, AWQLinear, Int8MixedLinear) that
`qlearn.methods` registers with `register_layer_type`. Loading first
checks everything (layer names and shapes, tensor names, shapes and dtypes) on a copy of the
skeleton; only a complete match is returned, so a wrong file never leaves a half-loaded model.
"""

from __future__ import annotations

import copy
import json
import os

import torch
from torch import nn

from ..core.granularity import PerChannel, PerGroup, PerTensor, PerToken
from .kernels import aligned
from .linear import QuantLinear

FORMAT = "qlearn-quantized/2"
READS = ("qlearn-quantized/1", FORMAT)  # /1 held QuantLinear configs only, without a type name
LAYER_TYPES: dict[str, type] = {"QuantLinear": QuantLinear}


def register_layer_type(cls: type) -> type:
    """Let save/load handle layers of `cls`: an nn.Module with `config()` -> its constructor's keyword arguments."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and callable(getattr(cls, "config", None))):
        raise TypeError(f"a layer type must be an nn.Module class with a config() method, got {cls!r}")
    LAYER_TYPES[cls.__name__] = cls
    return cls


def _encode(value):
    """A config value as JSON: granularities and dtypes tagged, plain numbers / strings / bools / None as is."""
    if isinstance(value, (PerGroup, PerChannel, PerTensor, PerToken)):
        return {"granularity": granularity_to_dict(value)}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot store the layer config value {value!r}")


def _decode(value):
    if isinstance(value, dict) and set(value) == {"granularity"}:
        return granularity_from_dict(value["granularity"])
    if isinstance(value, dict) and set(value) == {"dtype"}:
        dtype = getattr(torch, str(value["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"not a torch dtype: {value['dtype']!r}")
        return dtype
    return value


def layer_config(layer: nn.Module) -> dict:
    """{"type": class name, "config": its constructor arguments as JSON-able values} for a quantized layer."""
    if type(layer).__name__ not in LAYER_TYPES or LAYER_TYPES[type(layer).__name__] is not type(layer):
        raise TypeError(f"layer must be one of the quantized layer types {sorted(LAYER_TYPES)}, "
                        f"got {type(layer).__name__}")
    return {"type": type(layer).__name__, "config": {k: _encode(v) for k, v in layer.config().items()}}


def layer_from_config(entry: dict, kernel: str = "auto") -> nn.Module:
    """An empty layer on the meta device from a `layer_config` entry (whitelisted types only, no eval)."""
    cls = LAYER_TYPES.get(entry.get("type")) if isinstance(entry, dict) else None
    if cls is None or not isinstance(entry.get("config"), dict):
        raise ValueError(f"unknown quantized layer type {entry.get('type') if isinstance(entry, dict) else entry!r}; "
                         f"known: {sorted(LAYER_TYPES)} (import qlearn.methods to register the method layers)")
    layer = cls(**{k: _decode(v) for k, v in entry["config"].items()}, device="meta")
    if hasattr(layer, "kernel"):
        layer.kernel = kernel
    return layer


def granularity_to_dict(granularity) -> dict:
    """{"type": "PerGroup", "group_size": 128}-style description of a weight (or activation: PerToken) granularity."""
    if isinstance(granularity, PerGroup):
        return {"type": "PerGroup", "group_size": granularity.group_size}
    if isinstance(granularity, PerChannel):
        return {"type": "PerChannel", "axis": granularity.axis}
    if isinstance(granularity, PerTensor):
        return {"type": "PerTensor"}
    if isinstance(granularity, PerToken):
        return {"type": "PerToken"}
    raise ValueError(f"cannot describe granularity {granularity!r}")


def granularity_from_dict(d: dict):
    """Inverse of `granularity_to_dict` (the weight granularities and PerToken, no eval)."""
    if not isinstance(d, dict) or d.get("type") not in ("PerGroup", "PerChannel", "PerTensor", "PerToken"):
        raise ValueError(f"not a granularity description: {d!r}")
    if d["type"] == "PerToken":
        return PerToken()
    if d["type"] == "PerGroup":
        return PerGroup(d["group_size"])
    if d["type"] == "PerChannel":
        return PerChannel(d["axis"])
    return PerTensor()


def _named_tensors(model: nn.Module):
    """(name, tensor, is_parameter) for every parameter and buffer, tied ones under each of their names."""
    for name, p in model.named_parameters(remove_duplicate=False):
        yield name, p, True
    for name, b in model.named_buffers(remove_duplicate=False):
        yield name, b, False


def save_quantized(model: nn.Module, path) -> None:
    """Write `model` (with its QuantLinear layers) to a safetensors file at `path`."""
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    tensors, aliases, first = {}, {}, {}
    for name, t, _ in _named_tensors(model):
        if t.is_meta:
            raise ValueError(f"{name} is on the meta device: there are no values to save")
        if id(t) in first:
            aliases[name] = first[id(t)]
            continue
        first[id(t)] = name
        tensors[name] = t.detach().cpu().contiguous()
    layers = {name: layer_config(m) for name, m in model.named_modules() if type(m) in LAYER_TYPES.values()}
    metadata = {"format": FORMAT, "quant_layers": json.dumps(layers), "aliases": json.dumps(aliases)}
    save_file(tensors, str(path), metadata=metadata)


def _read(path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise ValueError(f"no such file: {path!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if metadata.get("format") not in READS:
        raise ValueError(f"{path} was not written by qlearn.save_quantized (format {metadata.get('format')!r})")
    layers = json.loads(metadata["quant_layers"])
    if metadata["format"] != FORMAT:  # /1: QuantLinear configs, granularity and dtype untagged
        layers = {name: {"type": "QuantLinear", "config": {**cfg, "granularity": {"granularity": cfg["granularity"]},
                                                           "dtype": {"dtype": cfg["dtype"]}}}
                  for name, cfg in layers.items()}
    return tensors, layers, json.loads(metadata["aliases"])


def _replace_layers(model: nn.Module, layers: dict, kernel: str) -> None:
    modules = dict(model.named_modules())
    for name, entry in layers.items():
        new = layer_from_config(entry, kernel)
        old = modules.get(name)
        if not isinstance(old, (nn.Linear, type(new))):
            raise ValueError(f"the file has a quantized layer {name!r}, but the skeleton has "
                             f"{'no such module' if old is None else type(old).__name__} there")
        if (old.in_features, old.out_features) != (new.in_features, new.out_features):
            raise ValueError(f"layer {name!r}: the file has {new.in_features} -> {new.out_features}, "
                             f"the skeleton {old.in_features} -> {old.out_features}")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)


def load_quantized(skeleton: nn.Module, path, kernel: str = "auto") -> nn.Module:
    """A copy of `skeleton` (any device, meta is cheapest) with the saved layers and tensors of `path`.

    Raises ValueError naming what does not match: a layer, a missing or extra tensor, a shape or dtype.
    """
    if not isinstance(skeleton, nn.Module):
        raise TypeError(f"skeleton must be a torch.nn.Module, got {type(skeleton).__name__}")
    tensors, layers, aliases = _read(path)
    model = copy.deepcopy(skeleton)
    _replace_layers(model, layers, kernel)
    expected = {name: (t, is_param) for name, t, is_param in _named_tensors(model)}
    in_file = set(tensors) | set(aliases)
    missing, extra = sorted(set(expected) - in_file), sorted(in_file - set(expected))
    if missing or extra:
        raise ValueError(f"{path} does not match the skeleton: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, (t, _) in expected.items():
        saved = tensors[aliases.get(name, name)]
        if saved.shape != t.shape:
            raise ValueError(f"{name}: the file has shape {tuple(saved.shape)}, the skeleton {tuple(t.shape)}")
        if saved.dtype != t.dtype and not (saved.is_floating_point() and t.is_floating_point()):
            raise ValueError(f"{name}: the file has dtype {saved.dtype}, the skeleton {t.dtype}")
    made = {}
    for name, (t, is_param) in expected.items():
        source = aliases.get(name, name)
        if source not in made:
            # safetensors hands back views into the file at the header's offsets: realign them (see kernels.aligned)
            saved = aligned(tensors[source])
            made[source] = nn.Parameter(saved, requires_grad=t.requires_grad) if is_param else saved
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        (module._parameters if is_param else module._buffers)[attr] = made[source]
    return model
