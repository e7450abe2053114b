"""Every tensor handed to a fused kernel is contiguous and 64-byte aligned, whatever its origin.

The AVX-512 int8 kernel reads its weight with aligned vector loads: a misaligned buffer (a safetensors
view, a slice, `torch.frombuffer`) used to crash the whole process. The fast-path checks run in a child
process, so a crash is reported as a failed test instead of killing pytest.
"""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from qlearn import PerChannel, PerGroup, load_quantized, save_quantized
from qlearn.inference import kernels

ALIGN = 64  # bytes, the widest vector load of the CPU kernels (AVX-512)


def _is_aligned(t: torch.Tensor) -> bool:
    return t.is_contiguous() and t.data_ptr() % ALIGN == 0


def misaligned(t: torch.Tensor, offset: int = 24) -> torch.Tensor:
    """A contiguous copy of `t` whose first byte sits `offset` bytes past a 64-byte boundary."""
    nbytes = t.numel() * t.element_size()
    buf = torch.empty(nbytes + 2 * ALIGN, dtype=torch.uint8)
    start = (-buf.data_ptr()) % ALIGN + offset
    view = buf[start:start + nbytes].view(t.dtype).view(t.shape)
    view.copy_(t)
    assert view.data_ptr() % ALIGN == offset
    return view


def test_aligned_copies_only_what_needs_it():
    t = torch.randn(8, 16)
    assert kernels.aligned(t) is t
    odd = misaligned(t)
    fixed = kernels.aligned(odd)
    assert not kernels.is_aligned(odd) and kernels.is_aligned(fixed) and torch.equal(fixed, t)
    strided = t.t()
    assert kernels.is_aligned(kernels.aligned(strided)) and torch.equal(kernels.aligned(strided), strided)
    from_buffer = torch.frombuffer(bytearray(t.numpy().tobytes()) * 2, dtype=torch.float32)[3:3 + 128]
    assert kernels.is_aligned(kernels.aligned(from_buffer))


def test_is_aligned_rejects_non_tensors():
    with pytest.raises(TypeError, match="needs a tensor"):
        kernels.is_aligned([1, 2])


CHILD = textwrap.dedent('''
    import sys, torch
    from torch import nn
    sys.path.insert(0, {tests!r})
    from test_alignment import misaligned, FAST_CONFIGS, reloaded_model
    from qlearn import QuantLinear
    from qlearn.inference import kernels

    torch.manual_seed(0)
    for name, kwargs in FAST_CONFIGS:
        lin = nn.Linear(256, 64)
        fast = QuantLinear.from_linear(lin, kernel="auto", **kwargs)
        ref = QuantLinear.from_linear(lin, kernel="reference", **kwargs)
        for buf in ("weight_q", "scale", "zero_point"):
            setattr(fast, buf, misaligned(getattr(fast, buf)))
        for dtype in (torch.float32, torch.bfloat16):
            x = misaligned(torch.randn(64, 256).to(dtype), offset=8)
            assert kernels.select_name(fast, x) == name, (name, kernels.select_name(fast, x))
            with torch.no_grad():
                y, y_ref = fast(x).float(), ref(x).float()
            rel = float((y - y_ref).norm() / y_ref.norm())
            assert rel < 2e-2, (name, dtype, rel)
            print("ok", name, kwargs.get("bits"), dtype, flush=True)
    model, x = reloaded_model({path!r})
    with torch.no_grad():
        model(x)
    print("ok reloaded", flush=True)
''')

FAST_CONFIGS = [
    ("int8_cpu", dict(bits=8, granularity=PerChannel(0))),
    ("int4_cpu", dict(bits=4, granularity=PerGroup(64), symmetric=False)),
    ("w8a8", dict(bits=8, granularity=PerChannel(0), activations=8)),
]


def _model(prefix_len: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("l" * prefix_len, nn.Linear(256, 64))  # the name's length moves the tensors' offsets
    return model


def _save(path, prefix_len: int):
    from qlearn import quantize_model
    model = _model(prefix_len)
    quantize_model(model, bits=8, granularity=PerChannel(0))
    save_quantized(model, path)


def reloaded_model(path):
    prefix_len = int(open(str(path) + ".len").read())
    with torch.device("meta"):
        skeleton = _model(prefix_len)
    return load_quantized(skeleton, path), torch.randn(64, 256)


@pytest.fixture(scope="module")
def misaligned_file(tmp_path_factory):
    """A saved model whose tensors safetensors returns at offsets that are not multiples of 64."""
    path = tmp_path_factory.mktemp("aligned") / "model.safetensors"
    for prefix_len in range(1, 64):
        _save(path, prefix_len)
        if any(t.data_ptr() % ALIGN for t in load_file(str(path)).values()):
            (path.parent / "model.safetensors.len").write_text(str(prefix_len))
            return path
    pytest.skip("safetensors returned only aligned tensors for every name length tried")


def test_load_quantized_returns_only_aligned_tensors(misaligned_file):
    model, _ = reloaded_model(misaligned_file)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert tensors and all(_is_aligned(t) for t in tensors.values()), \
        {n: t.data_ptr() % 64 for n, t in tensors.items()}


def test_fast_paths_run_on_misaligned_codes_scales_and_inputs(misaligned_file):
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    child = CHILD.format(tests=tests_dir, path=str(misaligned_file))
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"child exited {run.returncode}:\n{run.stdout}\n{run.stderr[-2000:]}"
    assert run.stdout.count("ok ") == 2 * len(FAST_CONFIGS) + 1
