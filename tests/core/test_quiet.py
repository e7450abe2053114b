"""Importing qlearn, loading MiniLM and running the library comparison print none of torchao's known import noise,
but other warnings from the same loggers still reach stderr (checked in a fresh interpreter, where the imports
really happen)."""

import os
import subprocess
import sys
import textwrap

import pytest

KNOWN_NOISE = ("Failed to load", "_C_mxfp8", "_C_cutlass_90a", "register_constant()")

SCRIPT = textwrap.dedent("""
    import enum, logging, warnings
    import torch
    import qlearn
    from qlearn.teaching.compare import compare_with_quanto, compare_with_torchao

    W = torch.randn(8, 256, generator=torch.Generator().manual_seed(0))
    compare_with_torchao(W, 8)
    compare_with_quanto(W, "qint4", group_size=128)
    qlearn.data.models.load_model()  # transformers' from_pretrained imports torchao too (notebooks 01, 04, 05)
    import torchao, optimum.quanto  # noqa: F401  (really imported by now)

    # other records of the same loggers, and an ordinary warning, must still show
    logging.getLogger("torchao").warning("Failed to load /elsewhere/mylib.so: a real problem")
    logging.getLogger("torchao").warning("another torchao warning")

    class MyEnum(enum.Enum):
        A = 1
    logging.getLogger("torch.utils._pytree").warning(
        "%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type. "
        "Calling register_constant() on Enum subclasses is deprecated", MyEnum)
    warnings.warn("a user warning still shows")
""")


@pytest.fixture(scope="module")
def stderr():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_torchao_import_noise_is_gone(stderr):
    torchao_lines = [line for line in stderr.splitlines() if "torchao" in line or "KernelPreference" in line]
    assert not any(any(noise in line for noise in KNOWN_NOISE) for line in torchao_lines), stderr


def test_other_warnings_still_show(stderr):
    assert "/elsewhere/mylib.so: a real problem" in stderr
    assert "another torchao warning" in stderr
    assert "MyEnum" in stderr  # the pytree deprecation about an enum that is not torchao's
    assert "a user warning still shows" in stderr


def test_the_noise_really_appears_without_the_filter():
    """The test can fail: a bare `import torchao` in a fresh interpreter does print the noise here."""
    done = subprocess.run([sys.executable, "-c", "import torchao"], capture_output=True, text=True, timeout=300)
    if not any(noise in done.stderr for noise in KNOWN_NOISE):
        pytest.skip("this torchao build prints no import noise, so there is nothing to filter")
    assert any(noise in done.stderr for noise in KNOWN_NOISE)


def test_bitsandbytes_kernels_hub_notice_is_filtered_and_other_records_are_not():
    import logging

    from qlearn.core.quiet import silence_known_import_noise

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    silence_known_import_noise()
    silence_known_import_noise()  # idempotent: one filter, not two
    notice = logging.makeLogRecord({"name": logger.name, "levelno": logging.WARNING,
                                    "msg": "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please "
                                           "make sure you already `pip install kernels`", "args": ("No module",)})
    other = logging.makeLogRecord({"name": logger.name, "levelno": logging.WARNING, "msg": "a real problem"})
    assert len(logger.filters) == 1
    assert not logger.filter(notice) and logger.filter(other)
