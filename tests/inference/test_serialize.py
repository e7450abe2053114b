"""save_quantized / load_quantized: safetensors only, a meta skeleton, exact outputs, clear mismatches."""

import pytest
import torch
from safetensors import safe_open
from torch import nn

from qlearn import PerGroup, QuantLinear, load_quantized, quantize_model, save_quantized


def _model(seed=0, hidden=64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, 32))


def _skeleton(hidden=64):
    with torch.device("meta"):
        return _model(hidden=hidden)


@pytest.mark.parametrize("bits,granularity,activations", [(8, None, None), (4, PerGroup(32), None),
                                                          (2, PerGroup(32), None), (8, None, 8)],
                         ids=["w8", "w4-g32", "w2-g32", "w8a8"])
def test_reloaded_model_gives_identical_outputs(tmp_path, bits, granularity, activations):
    model = _model()
    kwargs = {} if granularity is None else {"granularity": granularity}
    quantize_model(model, bits=bits, activations=activations, **kwargs)
    path = tmp_path / "model.safetensors"
    save_quantized(model, path)
    loaded = load_quantized(_skeleton(), path)
    x = torch.randn(5, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded[0], QuantLinear) and loaded[0].bits == bits
    assert not any(t.is_meta for t in list(loaded.parameters()) + list(loaded.buffers()))


def test_file_is_plain_safetensors_with_packed_codes(tmp_path):
    model = _model()
    quantize_model(model, bits=4, granularity=PerGroup(32))
    path = tmp_path / "m.safetensors"
    save_quantized(model, path)
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("0.weight_q").dtype == torch.uint8
        assert "qlearn" in f.metadata()["format"]


def test_tied_weights_are_saved_once_and_stay_tied(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 16), nn.Linear(16, 16), nn.Linear(16, 10, bias=False))
    model[2].weight = model[0].weight  # tied, as in a language model head
    quantize_model(model, exclude=("2",))
    save_quantized(model, tmp_path / "t.safetensors")
    with torch.device("meta"):
        skeleton = nn.Sequential(nn.Embedding(10, 16), nn.Linear(16, 16), nn.Linear(16, 10, bias=False))
    skeleton[2].weight = skeleton[0].weight
    loaded = load_quantized(skeleton, tmp_path / "t.safetensors")
    assert loaded[2].weight is loaded[0].weight
    assert torch.equal(loaded[0].weight, model[0].weight)


def test_mismatched_skeleton_is_a_clear_error_and_untouched(tmp_path):
    model = _model()
    quantize_model(model, bits=8)
    path = tmp_path / "m.safetensors"
    save_quantized(model, path)
    wrong = _skeleton(hidden=48)
    with pytest.raises(ValueError, match="the file has 64 -> 64|skeleton 64 -> 48"):
        load_quantized(wrong, path)
    assert all(type(m) is not QuantLinear for m in wrong)
    with torch.device("meta"):
        other = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 32))
    with pytest.raises(ValueError, match="no such module"):
        load_quantized(other, path)


def test_bad_paths_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_quantized(_skeleton(), tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="readable"):
        load_quantized(_skeleton(), junk)
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not written by qlearn"):
        load_quantized(_skeleton(), tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="meta"):
        save_quantized(_skeleton(), tmp_path / "x.safetensors")
    with pytest.raises(TypeError):
        save_quantized("model", tmp_path / "x.safetensors")


def _saved(tmp_path, name="m.safetensors"):
    model = _model()
    quantize_model(model, bits=4, granularity=PerGroup(32), symmetric=False)
    save_quantized(model, tmp_path / name)
    return model, tmp_path / name


def test_a_bytes_path_is_a_path_and_other_types_are_refused(tmp_path):
    model, _ = _saved(tmp_path)
    path = bytes(tmp_path / "b.safetensors")
    save_quantized(model, path)
    loaded = load_quantized(_skeleton(), path)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for bad in (3, None, ["m.safetensors"]):
        with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
            load_quantized(_skeleton(), bad)
        with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
            save_quantized(model, bad)


def test_save_refuses_a_directory_a_missing_folder_and_non_finite_values(tmp_path):
    model, _ = _saved(tmp_path)
    with pytest.raises(ValueError, match="is a directory; save_quantized writes one file"):
        save_quantized(model, tmp_path)
    with pytest.raises(ValueError, match="folder .*missing-folder does not exist"):
        save_quantized(model, tmp_path / "missing-folder" / "m.safetensors")
    with torch.no_grad():
        model[1].weight[3] = float("nan")
    with pytest.raises(ValueError, match=r"1\.weight holds NaN or inf"):
        save_quantized(model, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()


def test_load_checks_its_kernel_and_skeleton_arguments(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ValueError, match="kernel must be one of"):
        load_quantized(_skeleton(), path, kernel="fast")
    with pytest.raises(TypeError, match="skeleton must be a torch.nn.Module"):
        load_quantized("model", path)
    assert load_quantized(_skeleton(), path, kernel="reference")[0].kernel == "reference"


def test_layer_from_config_says_what_is_wrong_with_an_entry():
    from qlearn.inference.serialize import layer_from_config
    with pytest.raises(ValueError, match=r"must be \{'type': layer class name, 'config'.*got \['type'\]"):
        layer_from_config({"type": "QuantLinear"})  # no config: the type is known, the message must not deny it
    with pytest.raises(ValueError, match="unknown quantized layer type 'Foo'; known: .*'QuantLinear'"):
        layer_from_config({"type": "Foo", "config": {}})
    entry = {"type": "QuantLinear", "config": {"in_features": 8, "out_features": 4, "bits": 99}}
    with pytest.raises(ValueError, match="bits must be from 2 to 8, got 99"):
        layer_from_config(entry)


def test_a_nan_scale_is_refused_and_the_skeleton_kept(tmp_path):
    """The issue's case: a NaN scale loaded and the model output NaN. A stale checksum or none: both refused."""
    from safetensors.torch import load_file, save_file

    _, path = _saved(tmp_path)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors["0.scale"].view(-1)[0] = float("nan")
    skeleton = _skeleton()
    for name, meta in (("stale.safetensors", metadata), ("edited.safetensors", {k: v for k, v in metadata.items()
                                                                                if k != "crc32"})):
        save_file(tensors, str(tmp_path / name), metadata=meta)
        with pytest.raises(ValueError, match=rf"{name}: tensor '0.scale' (holds NaN|does not match its crc32)"):
            load_quantized(skeleton, tmp_path / name)
        assert all(type(m) is not QuantLinear for m in skeleton)
