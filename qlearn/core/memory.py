"""Hand the memory of deleted model copies back to the operating system (notebooks 05, 08-10).

`del model` drops Python's last reference and PyTorch frees the tensors, yet the process often keeps the memory:
glibc's allocator (Linux) keeps freed blocks for reuse, and after a large block is freed it raises its mmap
threshold, so later tensors of up to 32 MiB come from the heap, which it rarely shrinks. A notebook that builds,
scores and deletes one model copy after another then grows as if it kept them all.

free_memory() runs the garbage collector and, where the C library is glibc, fixes the mmap threshold at 1 MiB (a
tensor of 1 MiB or more gets its own mapping, returned the moment it is freed) and trims the heap (malloc_trim).
Elsewhere (macOS, Windows, musl) it only collects garbage.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

__all__ = ["free_memory"]

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
_THRESHOLD_BYTES = 1 << 20


@functools.cache
def _glibc():
    """The loaded glibc, with mallopt and malloc_trim; None on any other C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


def free_memory() -> None:
    """Collect garbage and return the freed heap to the OS (glibc only; elsewhere a plain gc.collect())."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES)  # the first call fixes it; later calls change nothing
        libc.malloc_trim(0)
