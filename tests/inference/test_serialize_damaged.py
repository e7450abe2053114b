"""load_quantized on damaged files: every case is refused with a ValueError naming the file, or loads the original.

The originals are real files: small models quantized by each method through qlearn.quantize_model and written
by save_quantized. Each case damages one of them (truncation, flipped bytes, edited metadata, edited tensors,
aliases) or hands over something that is not such a file at all. A case must either raise ValueError /
TypeError whose message names the file (and the key, layer or tensor it is about), leaving the skeleton as it
was, or, where the damage left a valid file (a flipped byte in a key nobody reads), load a model equal to the
original. Edits of metadata and tensors drop the file's crc32 checksums (a hand-edited file), so the check
meant for that damage is the one that fires; the `stale-crc` cases keep them and must be refused as damaged.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from typing import Callable

import pytest
import safetensors.torch
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from qlearn import PerChannel, PerGroup, load_quantized, quantize_model, save_quantized
from qlearn.inference.serialize import LAYER_TYPES, layer_config

# --- the originals ----------------------------------------------------------------------------------------------


def _mlp(gelu: bool = False) -> nn.Module:
    return nn.Sequential(nn.Linear(32, 32), nn.GELU() if gelu else nn.LayerNorm(32), nn.Linear(32, 16))


LLAMA = LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, max_position_embeddings=16, tie_word_embeddings=True)


def _llama() -> nn.Module:
    return LlamaForCausalLM(LLAMA).eval()


def _split(raw: bytes) -> tuple[dict, bytes]:
    """safetensors layout: u64 little-endian header length n, n bytes of JSON header, then the tensor bytes."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header: dict, data: bytes) -> bytes:
    header = {**header, "__metadata__": dict(sorted(header["__metadata__"].items()))} if "__metadata__" in header \
        else header
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


# name -> (architecture, quantize_model arguments, calibration kind)
SOURCES = {
    "rtn-w4": (_mlp, dict(method="rtn", bits=4, granularity=PerGroup(16), symmetric=False), None),
    "rtn-w3": (_mlp, dict(method="rtn", bits=3, granularity=PerGroup(16), symmetric=False), None),
    "rtn-w6a8": (_mlp, dict(method="rtn", bits=6, granularity=PerChannel(0), activations=8, symmetric=True), None),
    "hqq": (_mlp, dict(method="hqq", bits=4, granularity=PerGroup(16)), None),
    "nf4": (_mlp, dict(method="nf4", bits=4, granularity=PerGroup(16), double_quant=True), None),
    "llm_int8": (_mlp, dict(method="llm_int8", bits=8, threshold=2.0), None),
    "awq-mlp": (lambda: _mlp(gelu=True), dict(method="awq", bits=4, granularity=PerGroup(16)), "x"),
    "gptq-llama": (_llama, dict(method="gptq", bits=4, granularity=PerGroup(16)), "ids"),
    "awq-llama": (_llama, dict(method="awq", bits=4, granularity=PerGroup(16)), "ids"),
}


def _original(name: str) -> tuple[bytes, dict]:
    """The file save_quantized writes for the quantized model, and the model's state (see `state`)."""
    arch, kwargs, data = SOURCES[name]
    torch.manual_seed(0)
    model = arch()
    gen = torch.Generator().manual_seed(1)
    calibration = None if data is None else [torch.randn(4, 32, generator=gen) if data == "x" else
                                             torch.randint(0, LLAMA.vocab_size, (2, 8), generator=gen)
                                             for _ in range(2)]
    quantize_model(model, calibration=calibration, **kwargs)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.safetensors")
        save_quantized(model, path)
        with open(path, "rb") as f:
            raw = f.read()
    # safetensors writes the header's keys in hash-map order, which changes from run to run; sorted, every
    # offset below hits the same byte in every run (the file means the same: same JSON, same tensor bytes)
    header, data = _split(raw)
    return _join({key: header[key] for key in sorted(header)}, data), state(model)


def state(model: nn.Module) -> dict:
    """Layer types and configs, every tensor (under each name, with which names share it)."""
    out = {name: layer_config(m) if type(m).__name__ in LAYER_TYPES else type(m).__name__
           for name, m in model.named_modules()}
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    for name, t in named:
        out[name] = (t.dtype, tuple(t.shape), t.detach().cpu(), [n for n, u in named if u is t])
    return out


BUILT = {name: _original(name) for name in SOURCES}
ORIGINALS = {name: raw for name, (raw, _) in BUILT.items()}
SKELETONS = {}


def skeleton(name: str) -> nn.Module:
    if name not in SKELETONS:
        with torch.device("meta"):
            SKELETONS[name] = SOURCES[name][0]()
    return SKELETONS[name]


def header_length(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "little")


def metadata(name: str) -> dict:
    return _split(ORIGINALS[name])[0]["__metadata__"]


def quant_layers(name: str) -> dict:
    return json.loads(metadata(name)["quant_layers"])


def tensors(name: str) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(ORIGINALS[name])


# --- damage ------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    source: str
    damage: Callable  # original bytes -> damaged bytes
    match: tuple = ()  # substrings the message must hold besides the file name
    maybe_valid: bool = False  # the damage may leave a valid file: then it must load the original


def set_metadata(edit, keep_crc: bool = False):
    """Damage: metadata = edit(dict of the metadata strings), at the byte level (tensor bytes untouched)."""
    def damage(raw):
        header, data = _split(raw)
        meta = dict(header["__metadata__"])
        if not keep_crc:
            meta.pop("crc32", None)
        header["__metadata__"] = edit(meta)
        return _join(header, data)
    return damage


def set_layers(edit, keep_crc: bool = False):
    """Damage: quant_layers = edit(parsed quant_layers), written back as JSON (NaN written as NaN)."""
    return set_metadata(lambda meta: {**meta, "quant_layers": json.dumps(edit(json.loads(meta["quant_layers"])))},
                        keep_crc)


def set_config(layer: str, edit):
    def change(layers):
        layers[layer]["config"] = edit(dict(layers[layer]["config"]))
        return layers
    return set_layers(change)


def set_aliases(edit):
    return set_metadata(lambda meta: {**meta, "aliases": json.dumps(edit(json.loads(meta["aliases"])))})


def set_tensors(edit, keep_crc: bool = False):
    """Damage: the file rewritten by safetensors with tensors = edit(dict of its tensors)."""
    def damage(raw):
        meta = dict(_split(raw)[0]["__metadata__"])
        if not keep_crc:
            meta.pop("crc32")
        return safetensors.torch.save(edit(safetensors.torch.load(raw)), metadata=meta)
    return damage


def with_value(name: str, value: float):
    def edit(ts):
        t = ts[name].clone()
        t.view(-1)[0] = value
        return {**ts, name: t}
    return edit


def flip(offset: int, mask: int):
    return lambda raw: raw[:offset] + bytes([raw[offset] ^ mask]) + raw[offset + 1:]


def without(mapping: dict, key) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def _file_cases(source: str) -> list[Case]:
    """Truncations, appended bytes and flipped bytes, at offsets spread over the header and the data."""
    raw = ORIGINALS[source]
    n, size = header_length(raw), len(raw)
    cases = [Case(f"{source}-truncate-{cut}", source, lambda r, cut=cut: r[:cut])
             for cut in sorted({0, 7, 8, 8 + n // 2, 8 + n, 8 + n + 1, (8 + n + size) // 2, size - 1})]
    cases.append(Case(f"{source}-append-8", source, lambda r: r + b"\0" * 8))
    cases += [Case(f"{source}-flip-length-byte{i}", source, flip(i, 0x01)) for i in (0, 3)]
    cases += [Case(f"{source}-flip-header-{k}of12", source, flip(8 + k * n // 12, 0x01), maybe_valid=True)
              for k in range(12)]
    cases += [Case(f"{source}-flip-data-{k}of6", source, flip(8 + n + k * (size - 8 - n) // 6, 0xFF))
              for k in range(6)]
    return cases


def _metadata_cases(source: str) -> list[Case]:
    """Each top-level metadata key removed, retyped, set to garbage or to JSON of the wrong shape."""
    cases = []
    for key in ("format", "quant_layers", "aliases", "crc32"):
        cases.append(Case(f"{source}-meta-{key}-removed", source, set_metadata(lambda m, key=key: without(m, key)),
                          (key,), maybe_valid=key == "crc32"))
        if key == "crc32":
            garbage = {"garbage": "garbage", "list": "[]", "number": "7", "string": '"x"', "open": "{",
                       "deep": "[" * 100000, "nan": '{"quant_layers": NaN, "aliases": 0, "tensors": {}}',
                       "keys": '{"a": 1}', "bool": '{"quant_layers": true, "aliases": 0, "tensors": {}}',
                       "empty-tensors": json.dumps({**json.loads(metadata(source)["crc32"]), "tensors": {}}),
                       "wrong-sum": json.dumps({**json.loads(metadata(source)["crc32"]), "aliases": 1})}
            cases += [Case(f"{source}-meta-crc32-{what}", source,
                           set_metadata(lambda m, v=value: {**m, "crc32": v}, keep_crc=True), ("crc32",))
                      for what, value in garbage.items()]
            continue
        garbage = {"garbage": "garbage", "list": "[]", "number": "7", "null": "null", "string": '"x"', "open": "{",
                   "deep": "[" * 100000, "empty-string": ""}
        if key == "format":
            garbage = {"garbage": "garbage", "v3": "qlearn-quantized/3", "empty-string": "", "json": '"qlearn"'}
        cases += [Case(f"{source}-meta-{key}-{what}", source, set_metadata(lambda m, key=key, v=value: {**m, key: v}),
                       (key,)) for what, value in garbage.items()]
        cases.append(Case(f"{source}-meta-{key}-stale-crc", source, set_metadata(
            lambda m, key=key: {**m, key: m[key] + " "}, keep_crc=True), (key,)))
    cases.append(Case(f"{source}-meta-no-metadata", source, lambda r: _join(without(_split(r)[0], "__metadata__"),
                                                                            _split(r)[1]), ("format",)))
    return cases


def _bad_values(key: str, value) -> dict:
    """Values of the wrong type or out of range for a config value like `value` (never a valid alternative)."""
    if isinstance(value, bool):
        return {"str": "yes", "int": 1, "null": None, "list": []}
    if isinstance(value, (int, float)) or value is None:
        bad = {"str": "8", "bool": True, "list": [4], "neg": -1, "zero": 0, "nan": float("nan")}
        if not isinstance(value, float):
            bad |= {"frac": 4.5, "huge": 2 ** 40, "99": 99}
        if value is not None and key not in ("activations", "threshold"):  # None means "off" for those two
            bad["null"] = None
        return bad
    if "dtype" in value:
        return {"float33": {"dtype": "float33"}, "int8": {"dtype": "int8"}, "number": {"dtype": 5},
                "Tensor": {"dtype": "Tensor"}, "untagged": value["dtype"]}
    bad = {"PerGroup7": {"type": "PerGroup", "group_size": 7}, "PerGroup0": {"type": "PerGroup", "group_size": 0},
           "PerGroup-str": {"type": "PerGroup", "group_size": "16"}, "PerChannel5": {"type": "PerChannel", "axis": 5},
           "PerBlock": {"type": "PerBlock"}, "no-type": {}, "type-list": {"type": ["PerTensor"]},
           "extra": {"type": "PerTensor", "x": 1}}
    if key != "activation_granularity":
        bad["PerToken"] = {"type": "PerToken"}
    return {what: {"granularity": g} for what, g in bad.items()} | {
        "not-object": {"granularity": "PerGroup"}, "untagged": value["granularity"]}


def _config_cases(source: str) -> list[Case]:
    """Every config value of the source's first quantized layer set to wrong types and out-of-range values."""
    layer, entry = next(iter(quant_layers(source).items()))
    cases = []
    for key, value in entry["config"].items():
        cases.append(Case(f"{source}-config-{key}-removed", source, set_config(layer, lambda c, k=key: without(c, k)),
                          (repr(layer), key)))
        cases += [Case(f"{source}-config-{key}-{what}", source, set_config(layer, lambda c, k=key, v=bad: {**c, k: v}),
                       ("quant_layers",) if what == "nan" else (repr(layer), key))  # NaN: not JSON at all
                  for what, bad in _bad_values(key, value).items()]
    cases += [Case(f"{source}-config-extra-{key}", source, set_config(layer, lambda c, k=key, v=v: {**c, k: v}),
                   (repr(layer), key)) for key, v in (("kernel", "reference"), ("device", "cpu"), ("color", 1))]
    return cases


def _layer_cases(source: str) -> list[Case]:
    """The layer entries: shape, type, names, duplicates, a layer left out, the /1 tag on a /2 body."""
    layers = quant_layers(source)
    layer, entry = next(iter(layers.items()))
    q = repr(layer)
    edits = {"not-object": (lambda e: [e], ()), "no-type": (lambda e: without(e, "type"), ("type",)),
             "no-config": (lambda e: without(e, "config"), ("config",)), "extra-key": (lambda e: {**e, "x": 1}, ()),
             "type-unknown": (lambda e: {**e, "type": "FooLinear"}, ("FooLinear",)),
             "type-Linear": (lambda e: {**e, "type": "Linear"}, ("Linear",)),
             "type-number": (lambda e: {**e, "type": 3}, ("type",)),
             "config-list": (lambda e: {**e, "config": []}, ("config",)),
             "config-null": (lambda e: {**e, "config": None}, ("config",))}
    edits |= {f"retype-{t}": (lambda e, t=t: {**e, "type": t}, ()) for t in sorted(LAYER_TYPES) if t != entry["type"]}
    cases = [Case(f"{source}-layer-{what}", source, set_layers(lambda ls, f=f: {**ls, layer: f(ls[layer])}),
                  (q,) + match) for what, (f, match) in edits.items()]
    modules = dict(skeleton(source).named_modules())
    not_linear = next(name for name, m in modules.items() if name and not isinstance(m, nn.Linear))
    cases += [
        Case(f"{source}-layer-name-missing", source, set_layers(lambda ls: {**ls, "nowhere": ls[layer]}), ("nowhere",)),
        Case(f"{source}-layer-on-{type(modules[not_linear]).__name__}", source,
             set_layers(lambda ls: {**ls, not_linear: ls[layer]}), (repr(not_linear),)),
        Case(f"{source}-layer-left-out", source, set_layers(lambda ls: without(ls, layer)), (layer,)),
        Case(f"{source}-layers-empty", source, set_layers(lambda ls: {}), ("missing",)),
        Case(f"{source}-layer-duplicate-key", source, set_metadata(lambda m: {**m, "quant_layers": m["quant_layers"]
             .replace("{", "{" + json.dumps(layer) + ": {}, ", 1)}), ("quant_layers", "duplicate")),
        Case(f"{source}-format-v1-on-v2-body", source,
             set_metadata(lambda m: {**m, "format": "qlearn-quantized/1"}), ("format /1", q)),
        Case(f"{source}-layers-stale-crc", source, set_layers(lambda ls: {**ls, layer: {**ls[layer], "x": 1}},
                                                              keep_crc=True), ("quant_layers", "crc32")),
    ]
    return cases


def _alias_cases(source: str) -> list[Case]:
    """Aliases to missing tensors, shadowing stored ones, chains, cycles; the tie left out."""
    (alias, target), stored = next(iter(json.loads(metadata(source)["aliases"]).items())), list(tensors(source))
    other = next(name for name in stored if name != target)
    edits = {"missing-target": ({alias: "nowhere.weight"}, "nowhere.weight"), "shadow": ({other: target}, other),
             "shadow-self": ({target: target}, target), "self": ({alias: alias}, alias),
             "chain": ({alias: "x.weight", "x.weight": target}, "x.weight"),
             "cycle": ({alias: "x.weight", "x.weight": alias}, "x.weight"), "number": ({alias: 3}, "aliases"),
             "unknown-name": ({alias: target, "nowhere.weight": target}, "nowhere.weight"),
             "left-out": ({}, alias)}
    cases = [Case(f"{source}-alias-{what}", source, set_aliases(lambda a, v=value: v), (name,))
             for what, (value, name) in edits.items()]
    cases.append(Case(f"{source}-alias-shadowed-by-tensor", source,
                      set_tensors(lambda ts: {**ts, alias: ts[target].clone()}), (alias,)))
    cases.append(Case(f"{source}-alias-stale-crc", source, set_metadata(
        lambda m: {**m, "aliases": json.dumps({alias: other})}, keep_crc=True), ("aliases", "crc32")))
    return cases


def _tensor_cases(source: str, limit: int | None = None) -> list[Case]:
    """NaN / inf injected into each float tensor; each tensor retyped, reshaped, left out; an extra one."""
    ts, layers = tensors(source), quant_layers(source)
    cases = []
    first = next(n for n, t in ts.items() if t.is_floating_point())
    for name, t in list(ts.items())[:limit]:
        in_layer = name.rpartition(".")[0] in layers  # a float tensor elsewhere may come in another float dtype
        if t.is_floating_point():
            cases += [Case(f"{source}-tensor-{name}-{v}", source, set_tensors(with_value(name, float(v))), (name,))
                      for v in (("nan", "inf", "-inf") if name == first else ("nan",))]
        wrong = {torch.int8: torch.int16, torch.uint8: torch.int8}.get(t.dtype, torch.float16 if in_layer and
                                                                        t.dtype != torch.float16 else torch.int32)
        cases += [
            Case(f"{source}-tensor-{name}-as-{str(wrong)[6:]}", source,
                 set_tensors(lambda s, n=name, d=wrong: {**s, n: s[n].to(d)}), (name,)),
            Case(f"{source}-tensor-{name}-flat-plus-one", source,
                 set_tensors(lambda s, n=name: {**s, n: torch.cat([s[n].reshape(-1), s[n].reshape(-1)[:1]])}),
                 (name,)),
            Case(f"{source}-tensor-{name}-missing", source, set_tensors(lambda s, n=name: without(s, n)), (name,))]
    cases.append(Case(f"{source}-tensor-extra", source, set_tensors(lambda s: {**s, "extra.t": torch.zeros(3)}),
                      ("extra.t",)))
    name = next(n for n, t in ts.items() if t.is_floating_point())
    cases.append(Case(f"{source}-tensor-nan-stale-crc", source, set_tensors(with_value(name, float("nan")), True),
                      (name, "crc32")))
    return cases


def _code_cases() -> list[Case]:
    """Integer data out of its range: zero points, codes, scales of QuantLinear (rtn-w4: asymmetric, packed 4-bit;
    rtn-w3: packed in nibbles; rtn-w6a8: symmetric, int8 codes)."""
    edits = [("rtn-w4", "0.zero_point", 100), ("rtn-w4", "0.zero_point", -9), ("rtn-w4", "2.scale", 0.0),
             ("rtn-w4", "2.scale", -1.0), ("rtn-w3", "0.weight_q", 0xFF), ("rtn-w3", "0.weight_q", 0x80),
             ("rtn-w6a8", "0.weight_q", 100), ("rtn-w6a8", "0.weight_q", -33), ("rtn-w6a8", "0.zero_point", 1),
             ("rtn-w6a8", "2.scale", 0.0)]
    return [Case(f"{source}-code-{name}-{value}", source, set_tensors(with_value(name, value)),
                 (f"layer {name.split('.')[0]!r}", name.split(".")[1])) for source, name, value in edits]


CASES = [case for source in SOURCES for case in _file_cases(source)]
CASES += [case for source in ("rtn-w4", "gptq-llama") for case in _metadata_cases(source)]
CASES += [case for source in ("rtn-w6a8", "hqq", "nf4", "llm_int8") for case in _config_cases(source)]
CASES += [case for source in ("rtn-w4", "hqq", "nf4", "llm_int8", "awq-mlp", "gptq-llama") for case in
          _layer_cases(source)]
CASES += [case for source in ("gptq-llama", "awq-llama") for case in _alias_cases(source)]
CASES += [case for source in ("rtn-w4", "hqq", "nf4", "llm_int8", "awq-mlp") for case in _tensor_cases(source)]
CASES += [case for source in ("gptq-llama",) for case in _tensor_cases(source, limit=6)]
CASES += _code_cases()


# --- the checks --------------------------------------------------------------------------------------------------


def snapshot(model: nn.Module) -> list:
    """Everything a load could change in a (meta) skeleton: module types, tensor identities, shapes, dtypes."""
    modules = [(name, type(m).__name__) for name, m in model.named_modules()]
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    return modules + [(name, id(t), t.dtype, tuple(t.shape), t.device.type, t.requires_grad) for name, t in named]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, x in a.items():
        y = b[name]
        if isinstance(x, tuple):
            assert (x[0], x[1], x[3]) == (y[0], y[1], y[3]) and torch.equal(x[2], y[2]), name
        else:
            assert x == y, name


REFERENCE = {}


def reference(source: str) -> dict:
    if source not in REFERENCE:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "m.safetensors")
            with open(path, "wb") as f:
                f.write(ORIGINALS[source])
            REFERENCE[source] = state(load_quantized(skeleton(source), path))
    return REFERENCE[source]


def check_refused_or_original(source: str, path, match=(), maybe_valid: bool = False) -> str:
    """Load `path`: a ValueError / TypeError naming the file (and `match`), skeleton untouched; or the original."""
    skel = skeleton(source)
    before = snapshot(skel)
    try:
        loaded = load_quantized(skel, path)
    except (ValueError, TypeError) as err:
        message = str(err)
        assert str(path) in message, message
        for part in match:
            assert part in message, (part, message)
        assert snapshot(skel) == before
        return "refused"
    assert maybe_valid, "a damaged file loaded"
    assert snapshot(skel) == before
    assert_same(state(loaded), reference(source))
    return "loaded"


def test_the_suite_is_large_and_its_ids_unique():
    ids = [case.id for case in CASES]
    assert len(ids) >= 250 and len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1][:5]


@pytest.mark.parametrize("source", SOURCES)
def test_every_original_loads_bit_exact(source):
    assert {type(m).__name__ for m in skeleton(source).modules()}.isdisjoint(LAYER_TYPES)
    layers = {e["type"] for e in quant_layers(source).values()}
    assert layers and layers <= set(LAYER_TYPES)
    assert_same(reference(source), BUILT[source][1])  # bit-exact: the loaded file is the quantized model
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.safetensors")
        with open(path, "wb") as f:
            f.write(ORIGINALS[source])
        model = load_quantized(skeleton(source), path)
        save_quantized(model, path + "2")
        assert_same(state(load_quantized(skeleton(source), path + "2")), reference(source))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_damaged_file_is_refused_or_loads_the_original(case, folder):
    path = folder / f"{case.id}.safetensors"
    damaged = case.damage(ORIGINALS[case.source])
    assert damaged != ORIGINALS[case.source]
    path.write_bytes(damaged)
    check_refused_or_original(case.source, path, case.match, case.maybe_valid)


class _Marker:
    """Unpickling this creates a folder: proof that the pickle ran."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return os.mkdir, (self.folder,)


def _wrong_files(tmp_path) -> dict:
    raw = ORIGINALS["rtn-w4"]
    return {"empty": b"", "text": b"hello, world\n" * 10, "random": bytes(torch.randint(0, 256, (4096,),
            generator=torch.Generator().manual_seed(0), dtype=torch.uint8).tolist()),
            "pickle": pickle.dumps({"w": _Marker(str(tmp_path / "pickle-ran"))}),
            "zip-magic": b"PK\x03\x04" + raw[4:], "huge-header-length": (2 ** 60).to_bytes(8, "little") + raw[8:],
            "header-past-end": (len(raw)).to_bytes(8, "little") + raw[8:],
            "header-not-json": (16).to_bytes(8, "little") + b"not json at all!",
            "header-list": (8).to_bytes(8, "little") + b"[]      ",
            "plain-safetensors": safetensors.torch.save({"0.weight": torch.zeros(2)}),
            "only-metadata": safetensors.torch.save({}, metadata=metadata("rtn-w4")),
            "overlapping-tensors": _join(_overlap(_split(raw)[0]), _split(raw)[1]),
            "two-files": raw + raw}


def _overlap(header: dict) -> dict:
    """Two tensors of the same byte size pointed at the same bytes (the other bytes then belong to none)."""
    sizes = {}
    for name, info in header.items():
        if name != "__metadata__":
            sizes.setdefault(info["data_offsets"][1] - info["data_offsets"][0], []).append(name)
    a, b = next(names for names in sizes.values() if len(names) > 1)[:2]
    return {**header, b: {**header[b], "data_offsets": header[a]["data_offsets"]}}


WRONG = ["empty", "text", "random", "pickle", "zip-magic", "huge-header-length", "header-past-end", "header-not-json",
         "header-list", "plain-safetensors", "only-metadata", "overlapping-tensors",
         "two-files"]


@pytest.mark.parametrize("kind", WRONG)
def test_wrong_file_is_refused(kind, tmp_path):
    content = _wrong_files(tmp_path)[kind]
    path = tmp_path / "m.safetensors"
    path.write_bytes(content)
    check_refused_or_original("rtn-w4", path)
    assert not (tmp_path / "pickle-ran").exists()


def test_a_torch_save_pickle_renamed_is_refused_without_running(tmp_path):
    path = tmp_path / "m.safetensors"
    torch.save({"w": _Marker(str(tmp_path / "pickle-ran"))}, path)
    check_refused_or_original("rtn-w4", path)
    assert not (tmp_path / "pickle-ran").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing"])
def test_what_is_not_a_file_is_refused(kind, tmp_path):
    path = tmp_path / "m.safetensors"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    check_refused_or_original("rtn-w4", path)


def test_a_proper_format_1_file_still_loads(tmp_path):
    """The /1 tag with a /1 body (QuantLinear configs, granularity and dtype untagged) loads as the original."""
    def to_v1(meta):
        v1 = {name: {k: v["granularity"] if k == "granularity" else v["dtype"] if k == "dtype" else v
                     for k, v in e["config"].items() if k not in ("activation_granularity", "smooth_input")}
              for name, e in json.loads(meta["quant_layers"]).items()}
        return {**meta, "format": "qlearn-quantized/1", "quant_layers": json.dumps(v1)}
    path = tmp_path / "m.safetensors"
    path.write_bytes(set_metadata(to_v1)(ORIGINALS["rtn-w4"]))
    assert check_refused_or_original("rtn-w4", path, maybe_valid=True) == "loaded"
    bad = set_metadata(lambda m: {**m, "quant_layers": json.dumps({"0": {"bits": 4}})})(path.read_bytes())
    path.write_bytes(bad)
    assert check_refused_or_original("rtn-w4", path, ("format /1", "'0'")) == "refused"
