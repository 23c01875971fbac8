"""Freed memory kept in the process while latency is measured (torch-free).

glibc's malloc hands large blocks back to the operating system when they are freed (blocks
over its mmap threshold, and the top of the heap over its trim threshold) and takes fresh
pages the next time, so every inference of a CPU network pays page faults for its activation
tensors: measured here on a child of the default space at 224 px, 7,000 to 14,600 minor
faults per inference, a third of its time, a number that changes from process to process
and with what else is allocated. A layer timed alone then faults differently from the same
layer inside its network, and a latency table's parts stop adding up to the network.

:func:`keep_freed_memory` sets glibc's thresholds (``mallopt``) so that freed memory stays
in the process: after the first run of a network, its runs fault no more, as in a
long-running server with a caching allocator (jemalloc, tcmalloc). The setting is
process-wide and stays: the process keeps its peak memory instead of returning it. Where
the C library is not glibc nothing is changed, and the fingerprint says so
(:func:`allocator`), so tables measured either way are never mixed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

KEPT = "kept"      # freed memory stays in the process (glibc, thresholds set)
SYSTEM = "system"  # the C library's own behaviour

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit; larger blocks still map
_TRIM_THRESHOLD = 2**31 - 1         # mallopt takes an int

_applied: str | None = None


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def allocator() -> str:
    """What :func:`keep_freed_memory` does in this process: :data:`KEPT` or :data:`SYSTEM`
    (part of a latency table's fingerprint)."""
    if _applied is not None:
        return _applied
    return KEPT if _glibc() is not None else SYSTEM


def keep_freed_memory() -> str:
    """Make glibc keep freed memory in the process (once; see the module's docstring).
    Returns :data:`KEPT`, or :data:`SYSTEM` where the C library is not glibc or refused."""
    global _applied
    if _applied is None:
        libc = _glibc()
        ok = libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) \
            and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
        _applied = KEPT if ok else SYSTEM
    return _applied


__all__ = ["KEPT", "SYSTEM", "allocator", "keep_freed_memory"]
