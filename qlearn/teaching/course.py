"""The course map: every notebook, what it teaches, and how long it took to run when last executed."""

from __future__ import annotations

import json
import platform
import sys
from importlib import resources

NOTEBOOKS = (
    ("00_start_here", "Start here", "the course map, how to run it, an environment check"),
    ("01_dtypes_and_casting", "Data types and casting", "fp32/fp16/bf16/fp8, bit layouts, casting MiniLM"),
    ("02_linear_quantization", "Linear quantization", "r = s(q - z) by hand, error and SQNR, the explorer widget"),
    ("03_symmetric_vs_asymmetric", "Symmetric vs asymmetric", "where the zero point pays off, restricted range"),
    ("04_granularity", "Granularity", "per-tensor, per-channel, per-group; metadata cost; torchao and quanto"),
    ("05_quantized_inference", "Quantized inference", "QuantLinear, packed int4, fast kernels, real memory"),
    ("06_quantization_aware_training", "Quantization-aware training", "observers, calibration, STE, PTQ vs QAT"),
    ("07_pruning_and_distillation", "Pruning and distillation", "magnitude and structured pruning, KD, a pipeline"),
    ("08_weight_methods", "Weight methods for LLMs", "NF4, HQQ, GPTQ and AWQ from scratch; a shootout on MiniLM and SmolLM2"),
    ("09_activation_outliers", "Activation outliers", "outlier features, per-token scales, LLM.int8(), SmoothQuant"),
    ("10_qlora", "QLoRA", "the memory of fine-tuning, LoRA by hand, NF4 + LoRA on SmolLM2, bitsandbytes + peft"),
)
RUNTIMES = "notebook_runtimes.json"


def runtimes() -> dict[str, float]:
    """Seconds each notebook took when `scripts/execute_notebooks.py` last ran it (a 2-core CPU in CI)."""
    path = resources.files("qlearn") / "data" / RUNTIMES
    return json.loads(path.read_text()) if path.is_file() else {}


def environment_checks() -> list[tuple[str, bool, str]]:
    """(what, ok, detail) for each thing the course needs; nothing here touches the network."""
    checks = [("Python >= 3.10", sys.version_info >= (3, 10), platform.python_version())]

    def attempt(name, fn):
        try:
            checks.append((name, True, fn()))
        except Exception as exc:  # report, do not crash: this is a diagnostic
            checks.append((name, False, f"{type(exc).__name__}: {exc}"))

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

    def digits_ok():
        from ..data.digits import load_digits

        d = load_digits()
        return f"digits: {len(d.y_train)} train / {len(d.y_test)} test images"

    def libraries_ok():
        import importlib.metadata as md

        return ", ".join(f"{n} {md.version(n)}" for n in ("transformers", "optimum-quanto", "torchao"))

    for name, fn in [("PyTorch", torch_ok), ("ipywidgets (7.7 to 8.x)", widgets_ok),
                     ("bundled MiniLM model", minilm_ok), ("scikit-learn digits", digits_ok),
                     ("quantization libraries", libraries_ok)]:
        attempt(name, fn)
    return checks
