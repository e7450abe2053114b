"""Known, harmless log lines that importing torchao prints, filtered at the loggers that emit them.

Importing torchao (directly, through optimum-quanto, or through transformers' `from_pretrained`,
which imports its torchao quantizer) logs, as warnings on stderr:

    torchao:              "Failed to load .../torchao/_C_mxfp8....so: ..." and the same for
                          _C_cutlass_90a: optional CUDA kernels (MX fp8, sm90 CUTLASS) that qlearn never
                          calls; the wheel ships them built for another Python / GPU.
    torch.utils._pytree:  "<enum 'KernelPreference'> is an Enum subclass ... Calling register_constant()
                          on Enum subclasses is deprecated ...": torchao registering its own enums.

Using bitsandbytes' 4-bit CPU functions (notebooks 08 and 10) logs once, on a CPU with AVX-512 bf16:

    bitsandbytes.backends.cpu.ops: "Failed to load CPU gemm_4bit_forward from kernels-community: ...
                          Please make sure you already `pip install kernels` ...": an optional faster
                          kernel from the Hugging Face Hub; bitsandbytes falls back to its own, and
                          qlearn only compares codes with it.

All are `logging` records, so a `logging.Filter` on exactly those loggers, matching exactly those
messages, removes them; any other record of those loggers (or any `warnings.warn`) still shows.
"""

from __future__ import annotations

import logging
import re

__all__ = ["silence_known_import_noise", "silence_torchao_import_noise"]

# torchao's optional kernels whose load failure is expected and harmless for qlearn.
_SO_FAILURE = re.compile(r"^Failed to load \S*torchao[/\\]_C_(mxfp8|cutlass_90a)[^/\\\s]*\.so: ")
_ENUM_REGISTRATION = re.compile(r"is an Enum subclass and is now natively supported by torch\.compile .*"
                                r"Calling register_constant\(\) on Enum subclasses is deprecated", re.S)


class _KnownNoise(logging.Filter):
    """Drops a record whose message matches `pattern` (and, for the pytree logger, names a torchao enum)."""

    def __init__(self, pattern: re.Pattern, torchao_enum_only: bool = False):
        super().__init__()
        self.pattern, self.torchao_enum_only = pattern, torchao_enum_only

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.pattern.search(record.getMessage()):
            return True
        if self.torchao_enum_only:
            cls = record.args[0] if isinstance(record.args, tuple) and record.args else None
            return not getattr(cls, "__module__", "").startswith("torchao")
        return False


_KERNELS_HUB = re.compile(r"^Failed to load CPU gemm_4bit_forward from kernels-community: ")
_FILTERS = {"torchao": _KnownNoise(_SO_FAILURE),
            "torch.utils._pytree": _KnownNoise(_ENUM_REGISTRATION, torchao_enum_only=True)}
_ALL_FILTERS = {**_FILTERS, "bitsandbytes.backends.cpu.ops": _KnownNoise(_KERNELS_HUB)}


def _install(filters: dict[str, logging.Filter]) -> None:
    for name, noise in filters.items():
        logger = logging.getLogger(name)
        if noise not in logger.filters:
            logger.addFilter(noise)


def silence_torchao_import_noise() -> None:
    """Install the two torchao filters (idempotent). Call it before the import that may pull in torchao."""
    _install(_FILTERS)


def silence_known_import_noise() -> None:
    """Install every filter above, torchao's and bitsandbytes' (idempotent): call it before those imports."""
    _install(_ALL_FILTERS)
