"""Save and load a quantized model with safetensors (plain tensors and JSON metadata, never pickle).

    save_quantized(model, "model.safetensors")
    with torch.device("meta"):                      # a skeleton: the architecture, no memory
        skeleton = build_the_float_model()
    model = load_quantized(skeleton, "model.safetensors")

The file holds every parameter and buffer once (tied tensors are stored once and listed as aliases) and, in
its metadata (safetensors allows string -> string):

    format        "qlearn-quantized/2"
    quant_layers  JSON {module name: {"type": class name, "config": layer.config(), granularities and dtypes tagged}}
    aliases       JSON {tensor name: the stored tensor it is tied to}
    crc32         JSON {"quant_layers": crc, "aliases": crc, "tensors": {name: crc of its bytes}}

The layer types are QuantLinear here and the method layers (NF4Linear, HQQLinear, AWQLinear, Int8MixedLinear)
that `qlearn.methods` registers with `register_layer_type`. The CRC-32 checksums (as zip and PNG use) catch
damage, not a deliberate edit; files written before them (no `crc32` key) still load.

A file is untrusted input. `load_quantized` builds nothing before steps 1 and 2 pass, and works on a copy:

    1. the header: every key present with the right JSON shape, known layer types, config values of the right
       types, every alias pointing at a stored tensor (never shadowing one, never at another alias), checksums;
    2. the values: every floating-point tensor finite;
    3. on a copy of the skeleton: each layer built from its config reports the same config back; tensor names,
       shapes and dtypes match; QuantLinear codes lie in their bit range (scales > 0, zero points in range).

Any failure is a ValueError naming the file and the key or tensor; only a complete match is returned, so a
damaged file never leaves a half-loaded model, and the skeleton is never modified.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import zlib

import torch
from torch import nn

from ..core.granularity import PerChannel, PerGroup, PerTensor, PerToken
from ..core.primitives import qrange
from ..core.validation import check_choice, check_module
from .kernels import aligned
from .linear import KERNELS, QuantLinear
from .packing import container_bits

__all__ = ["FORMAT", "LAYER_TYPES", "READS", "granularity_from_dict", "granularity_to_dict", "layer_config",
           "layer_from_config", "load_quantized", "register_layer_type", "save_quantized"]

FORMAT = "qlearn-quantized/2"
READS = ("qlearn-quantized/1", FORMAT)  # /1 held QuantLinear configs only, without a type name
V1_KEYS = ("in_features", "out_features", "bits", "granularity", "symmetric", "bias", "activations", "dtype")
LAYER_TYPES: dict[str, type] = {"QuantLinear": QuantLinear}
GRANULARITY_FIELDS = {"PerGroup": (PerGroup, "group_size"), "PerChannel": (PerChannel, "axis"),
                      "PerTensor": (PerTensor, None), "PerToken": (PerToken, None)}


def register_layer_type(cls: type) -> type:
    """Let save/load handle layers of `cls`: an nn.Module with `config()` -> its constructor's keyword arguments."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and callable(getattr(cls, "config", None))):
        raise TypeError(f"a layer type must be an nn.Module class with a config() method, got {cls!r}")
    LAYER_TYPES[cls.__name__] = cls
    return cls


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def granularity_to_dict(granularity) -> dict:
    """{"type": "PerGroup", "group_size": 128}-style description of a weight (or activation: PerToken) granularity."""
    for kind, (cls, field) in GRANULARITY_FIELDS.items():
        if type(granularity) is cls:
            return {"type": kind} if field is None else {"type": kind, field: getattr(granularity, field)}
    raise ValueError(f"cannot describe granularity {granularity!r}")


def granularity_from_dict(d) -> PerGroup | PerChannel | PerTensor | PerToken:
    """Inverse of `granularity_to_dict` (exactly those keys, no eval); ValueError for anything else."""
    kind = d.get("type") if isinstance(d, dict) else None
    cls, field = GRANULARITY_FIELDS.get(kind, (None, None)) if isinstance(kind, str) else (None, None)
    if cls is None or set(d) != {"type"} | ({field} if field else set()):
        raise ValueError(f"not a granularity description: {_short(d)}; allowed: {{'type': 'PerGroup', "
                         "'group_size': g}, {'type': 'PerChannel', 'axis': a}, {'type': 'PerTensor'}, "
                         "{'type': 'PerToken'}")
    try:
        return cls() if field is None else cls(d[field])
    except (TypeError, ValueError) as err:
        raise ValueError(f"not a valid granularity {_short(d)}: {err}") from err


def _encode(value):
    """A config value as JSON: granularities and dtypes tagged, plain numbers / strings / bools / None as is."""
    if isinstance(value, (PerGroup, PerChannel, PerTensor, PerToken)):
        return {"granularity": granularity_to_dict(value)}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot store the layer config value {value!r}")


def _decode(value, where: str):
    """Inverse of `_encode`: a tagged granularity or dtype, or a plain JSON scalar; ValueError for anything else."""
    if isinstance(value, dict) and set(value) == {"granularity"}:
        try:
            return granularity_from_dict(value["granularity"])
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
    if isinstance(value, dict) and set(value) == {"dtype"}:
        dtype = getattr(torch, value["dtype"], None) if isinstance(value["dtype"], str) else None
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{where}: not a torch dtype: {_short(value['dtype'])}")
        return dtype
    if isinstance(value, (dict, list)):
        raise ValueError(f"{where}: a config value is a number, string, bool, null, {{'granularity': ...}} or "
                         f"{{'dtype': ...}}, got {_short(value)}")
    return value


def layer_config(layer: nn.Module) -> dict:
    """{"type": class name, "config": its constructor arguments as JSON-able values} for a quantized layer."""
    if type(layer).__name__ not in LAYER_TYPES or LAYER_TYPES[type(layer).__name__] is not type(layer):
        raise TypeError(f"layer must be one of the quantized layer types {sorted(LAYER_TYPES)}, "
                        f"got {type(layer).__name__}")
    return {"type": type(layer).__name__, "config": {k: _encode(v) for k, v in layer.config().items()}}


def _layer_class(entry, where: str) -> type:
    """The registered class an entry {"type": name, "config": {...}} names, after checking the entry's shape."""
    if not isinstance(entry, dict) or set(entry) != {"type", "config"}:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"{where} must be {{'type': layer class name, 'config': {{constructor arguments}}}}, "
                         f"got {keys}")
    if not isinstance(entry["type"], str) or entry["type"] not in LAYER_TYPES:
        raise ValueError(f"{where}: unknown quantized layer type {_short(entry['type'])}; known: "
                         f"{sorted(LAYER_TYPES)} (import qlearn to register the method layers)")
    if not isinstance(entry["config"], dict):
        raise ValueError(f"{where}: 'config' must be a JSON object of constructor arguments, got "
                         f"{_short(entry['config'])}")
    return LAYER_TYPES[entry["type"]]


def _same(a, b) -> bool:
    """Equal as JSON text: 6 and 6.0, or 1 and true, differ."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _config_difference(saved: dict, built: dict) -> str:
    parts = [f"missing keys {sorted(set(built) - set(saved))}"] if set(built) - set(saved) else []
    parts += [f"unexpected keys {sorted(set(saved) - set(built))}"] if set(saved) - set(built) else []
    parts += [f"{key}={_short(saved[key])} reads back as {_short(built[key])}"
              for key in sorted(set(saved) & set(built)) if not _same(saved[key], built[key])]
    return "; ".join(parts)


def _arguments(cls: type) -> set[str]:
    """The keyword arguments of cls's constructor, following **kwargs up to the parent (device, kernel left out)."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
    return names - {"self", "device", "kernel"}


def layer_from_config(entry: dict, kernel: str = "auto", where: str = "layer") -> nn.Module:
    """An empty layer on the meta device from a `layer_config` entry (whitelisted types only, no eval).

    The entry must describe the layer exactly: the built layer's own `config()` must give the entry back.
    """
    cls = _layer_class(entry, where)
    config = {key: _decode(value, f"{where} config {key!r}") for key, value in entry["config"].items()}
    try:
        layer = cls(**config, device="meta")
    except Exception as err:  # the config is data from a file: whatever the constructor refuses, say where
        call = ", ".join(f"{key}={value!r}" for key, value in config.items())
        unset = sorted(_arguments(cls) - set(config))
        raise ValueError(f"{where}: {cls.__name__}({call}) refuses: {type(err).__name__}: {err}"
                         + (f" (not in the file, so left at their defaults: {unset})" if unset else "")) from err
    built = layer_config(layer)["config"]
    if not _same(entry["config"], built):
        raise ValueError(f"{where}: the config does not describe a {cls.__name__}: "
                         f"{_config_difference(entry['config'], built)}")
    if hasattr(layer, "kernel"):
        layer.kernel = kernel
    return layer


def _file_path(path) -> str:
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file path (str, bytes or os.PathLike), got {type(path).__name__}")
    return os.fsdecode(path)


def _crc32(t: torch.Tensor) -> int:
    """CRC-32 of the tensor's bytes as stored (contiguous, native order)."""
    return zlib.crc32(t.detach().reshape(-1).view(torch.uint8).numpy())  # (numel * itemsize,) bytes


def _non_finite(t: torch.Tensor) -> bool:
    """True if a floating-point tensor holds NaN or +-inf (aminmax propagates NaN; one pass, no bool copy)."""
    if not t.is_floating_point() or t.numel() == 0:
        return False
    lo, hi = torch.aminmax(t.detach().float() if t.element_size() == 1 else t.detach())
    return not (math.isfinite(lo) and math.isfinite(hi))


def _named_tensors(model: nn.Module):
    """(name, tensor, is_parameter) for every parameter and buffer, tied ones under each of their names."""
    for name, p in model.named_parameters(remove_duplicate=False):
        yield name, p, True
    for name, b in model.named_buffers(remove_duplicate=False):
        yield name, b, False


def save_quantized(model: nn.Module, path) -> None:
    """Write `model` (with its quantized layers) to a safetensors file at `path` (str, bytes or os.PathLike)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    check_module(model)
    path = _file_path(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; save_quantized writes one file: pass a file path such as "
                         f"{os.path.join(path, 'model.safetensors')}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path}: the folder {folder} does not exist (create it first, "
                         f"e.g. os.makedirs({folder!r}))")
    tensors, aliases, first = {}, {}, {}
    for name, t, _ in _named_tensors(model):
        if t.is_meta:
            raise ValueError(f"{name} is on the meta device: there are no values to save")
        if id(t) in first:
            aliases[name] = first[id(t)]
            continue
        if _non_finite(t):
            raise ValueError(f"{name} holds NaN or inf: load_quantized refuses such a file; fix the model first")
        first[id(t)] = name
        tensors[name] = t.detach().cpu().contiguous()
    layers = {name: layer_config(m) for name, m in model.named_modules() if type(m) in LAYER_TYPES.values()}
    for name, entry in layers.items():  # what load_quantized will check: the config rebuilds the layer
        layer_from_config(entry, where=f"cannot save layer {name!r}")
    quant_layers, alias_json = json.dumps(layers, allow_nan=False), json.dumps(aliases)
    sums = {"quant_layers": zlib.crc32(quant_layers.encode()), "aliases": zlib.crc32(alias_json.encode()),
            "tensors": {name: _crc32(t) for name, t in tensors.items()}}
    metadata = {"format": FORMAT, "quant_layers": quant_layers, "aliases": alias_json, "crc32": json.dumps(sums)}
    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as err:
        raise ValueError(f"cannot write {path}: {err}") from err


def _read(path: str):
    """(tensors, metadata) of a safetensors file; ValueError for anything safetensors cannot parse (no pickle)."""
    from safetensors import safe_open

    if not os.path.exists(path):
        raise ValueError(f"no such file: {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is {'a directory' if os.path.isdir(path) else 'not a regular file'}, not a "
                         "file written by save_quantized")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    return tensors, metadata


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})[:5]}")
    return dict(pairs)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def _json(path: str, metadata: dict, key: str, values: type, what: str):
    """metadata[key] parsed as a JSON object whose values are all `values` (`what` in JSON); no duplicate keys."""
    try:
        parsed = json.loads(metadata[key], object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON: {err}") from err
    if not isinstance(parsed, dict):
        raise ValueError(f"{path}: metadata {key!r} must be a JSON object, got {type(parsed).__name__}")
    bad = [name for name, value in parsed.items() if not isinstance(value, values) or isinstance(value, bool)]
    if bad:
        raise ValueError(f"{path}: metadata {key!r}: the values of {bad[:5]} must be {what}")
    return parsed


def _check_crc32(path: str, metadata: dict, tensors: dict) -> None:
    """Compare the stored checksums (when the file has them) with the metadata strings and tensor bytes."""
    if "crc32" not in metadata:
        return  # written before the checksums
    sums = _json(path, metadata, "crc32", (int, dict), "integers or an object")
    per_tensor = sums.get("tensors")
    if set(sums) != {"quant_layers", "aliases", "tensors"} or not isinstance(per_tensor, dict) or any(
            isinstance(v, bool) or not isinstance(v, int) for v in [sums["quant_layers"], sums["aliases"]]
            + list(per_tensor.values())):
        raise ValueError(f"{path}: metadata 'crc32' must be {{'quant_layers': int, 'aliases': int, "
                         f"'tensors': {{name: int}}}}, got {_short(sums)}")
    for key in ("quant_layers", "aliases"):
        if zlib.crc32(metadata[key].encode()) != sums[key]:
            raise ValueError(f"{path}: metadata {key!r} does not match its crc32 checksum: the file is damaged")
    if set(per_tensor) != set(tensors):
        raise ValueError(f"{path}: the crc32 checksums name other tensors than the file holds: only checksummed "
                         f"{sorted(set(per_tensor) - set(tensors))[:5]}, only stored "
                         f"{sorted(set(tensors) - set(per_tensor))[:5]}")
    for name, t in tensors.items():
        if _crc32(t) != per_tensor[name]:
            raise ValueError(f"{path}: tensor {name!r} does not match its crc32 checksum: its bytes are damaged")


def _v1_entry(path: str, name: str, cfg) -> dict:
    """A /1 QuantLinear config as a /2 entry (granularity and dtype tagged, the options /1 did not have)."""
    if not isinstance(cfg, dict) or set(cfg) != set(V1_KEYS):
        keys = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise ValueError(f"{path}: quant_layers[{name!r}] in format /1 must have exactly the keys {list(V1_KEYS)}, "
                         f"got {keys}")
    return {"type": "QuantLinear", "config": {
        **cfg, "granularity": {"granularity": cfg["granularity"]}, "dtype": {"dtype": cfg["dtype"]},
        "activation_granularity": {"granularity": {"type": "PerToken"}}, "smooth_input": False}}


def _check_header(path: str, metadata: dict, tensors: dict) -> tuple[dict, dict]:
    """The quantized layers and aliases of a file, after every check that needs neither skeleton nor values."""
    fmt = metadata.get("format")
    if fmt not in READS:
        raise ValueError(f"{path} was not written by qlearn.save_quantized: metadata 'format' is {_short(fmt)}, "
                         f"readable: {READS}")
    for key in ("quant_layers", "aliases"):
        if key not in metadata:
            raise ValueError(f"{path}: the metadata has no {key!r} key (a {fmt} file has 'quant_layers' and "
                             "'aliases')")
    _check_crc32(path, metadata, tensors)
    aliases = _json(path, metadata, "aliases", str, "strings (tensor names)")
    layers = _json(path, metadata, "quant_layers", dict, "JSON objects (one per layer)")
    if fmt != FORMAT:
        layers = {name: _v1_entry(path, name, cfg) for name, cfg in layers.items()}
    for name, entry in layers.items():
        _layer_class(entry, f"{path}: quant_layers[{name!r}]")
    for name, target in aliases.items():
        where = f"{path}: alias {name!r} -> {target!r}"
        if name in tensors:
            raise ValueError(f"{where} would replace the stored tensor {name!r}; aliases name tied tensors that "
                             "are not stored")
        if name == target or target in aliases:
            raise ValueError(f"{where} points at {'itself' if name == target else 'another alias'}; an alias "
                             "points at a stored tensor (no chains or cycles)")
        if target not in tensors:
            raise ValueError(f"{where}: the file stores no tensor {target!r}")
    return layers, aliases


def _build_layers(path: str, skeleton: nn.Module, layers: dict, kernel: str) -> dict[str, nn.Module]:
    """Each quantized layer of the file, empty on the meta device, after checking it against the skeleton."""
    modules, built = dict(skeleton.named_modules()), {}
    for name, entry in layers.items():
        where = f"{path}: quant_layers[{name!r}]"
        cls, old = LAYER_TYPES[entry["type"]], modules.get(name)
        if not isinstance(old, (nn.Linear, cls)):
            raise ValueError(f"{where}: the file has a quantized layer {name!r}, but the skeleton has "
                             f"{'no such module' if old is None else type(old).__name__} there")
        sizes = (entry["config"].get("in_features"), entry["config"].get("out_features"))
        if sizes != (old.in_features, old.out_features):  # checked before building: sizes allocate memory
            raise ValueError(f"{where}: the file has in_features, out_features = {_short(sizes)}, the skeleton "
                             f"{old.in_features} -> {old.out_features}")
        built[name] = layer_from_config(entry, kernel, where)
    return built


def _check_codes(path: str, layers: dict[str, nn.Module]) -> None:
    """QuantLinear's integer data in range: scale > 0, zero point in [qmin, qmax] (0 if symmetric), codes."""
    for name, layer in layers.items():
        if not isinstance(layer, QuantLinear):
            continue  # NF4 (16 codes in 4 bits) and int8 codes cannot be out of range
        where = f"{path}: layer {name!r}"
        if not layer.zero_point.is_floating_point():  # HQQLinear keeps a float zero point (finite: checked)
            try:
                layer.qparams()  # QParams checks its scale and zero point
            except ValueError as err:
                raise ValueError(f"{where} scale / zero_point: {err}") from err
        qmin, qmax = qrange(layer.bits)
        c = container_bits(layer.bits)
        if 4 < layer.bits < 8:  # int8 codes (out, in)
            lo, hi = torch.aminmax(layer.weight_q)
            bad = int(lo) < qmin or int(hi) > qmax
        else:  # slots of c bits hold u = q - qmin in [0, 2^bits): the high bits of each slot must be 0
            mask = sum(((1 << c) - (1 << layer.bits)) << s for s in range(0, 8, c))
            bad = bool(mask) and bool((layer.weight_q & mask).any())
        if bad:
            raise ValueError(f"{where} weight_q: codes outside the {layer.bits}-bit range [{qmin}, {qmax}]")


def _set_layer(model: nn.Module, name: str, layer: nn.Module) -> nn.Module:
    if not name:
        return layer
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)
    return model


def load_quantized(skeleton: nn.Module, path, kernel: str = "auto") -> nn.Module:
    """A copy of `skeleton` (any device, meta is cheapest) with the saved layers and tensors of `path`.

    path is a str, bytes or os.PathLike; kernel is "auto" or "reference" (for the QuantLinear layers).
    Raises ValueError naming the file and what is wrong (see the module docstring); the skeleton is untouched.
    """
    check_module(skeleton, "skeleton")
    check_choice(kernel, "kernel", KERNELS)
    path = _file_path(path)
    tensors, metadata = _read(path)
    layers, aliases = _check_header(path, metadata, tensors)
    bad = [name for name, t in tensors.items() if _non_finite(t)]
    if bad:
        raise ValueError(f"{path}: tensor {bad[0]!r} holds NaN or inf" + (f" (and {bad[1:5]})" if bad[1:] else ""))
    built = _build_layers(path, skeleton, layers, kernel)
    model = copy.deepcopy(skeleton)
    for name, layer in built.items():
        model = _set_layer(model, name, layer)
    expected = {name: (t, is_param) for name, t, is_param in _named_tensors(model)}
    in_file = set(tensors) | set(aliases)
    missing, extra = sorted(set(expected) - in_file), sorted(in_file - set(expected))
    if missing or extra:
        layers_involved = sorted({name.rpartition(".")[0] for name in missing + extra} & set(built))
        raise ValueError(f"{path} does not match the skeleton: missing {len(missing)} {missing[:5]}, unexpected "
                         f"{len(extra)} {extra[:5]}" + "".join(f"; quant_layers[{name!r}] is a {layers[name]['type']}"
                                                               for name in layers_involved[:3]))
    for name, (t, _) in expected.items():
        saved = tensors[aliases.get(name, name)]
        if saved.shape != t.shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(saved.shape)}, the model needs "
                             f"{tuple(t.shape)}")
        exact = name.rpartition(".")[0] in built  # a quantized layer's tensors: its config fixed their dtype
        if saved.dtype != t.dtype and (exact or not (saved.is_floating_point() and t.is_floating_point())):
            raise ValueError(f"{path}: tensor {name!r} has dtype {saved.dtype}, the model needs {t.dtype}")
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
    _check_codes(path, built)
    return model
