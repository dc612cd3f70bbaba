"""Keep large freed blocks in the process instead of returning them to the kernel.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB, adjusted as blocks
are freed) with a fresh ``mmap`` and unmaps it on free, and trims the heap top above 128 KiB.
An evaluation batch of 1,000 Fashion-MNIST images through the ``cnn`` allocates activations of
about 50 MB, so every batch page-faults its memory in again: 330,000 minor faults and 40% of
the time of an evaluation of 10,000 images (2.36 s against 1.39 s with the thresholds raised,
``docs/performance.md``). A thread other than the main one allocates from an arena of 64 MiB
heaps, which cannot hold such blocks, so the server (Flower runs it in a thread) also keeps every
thread on the main heap. The server process evaluates every round, so the federation's
commands call :func:`keep_large_blocks` once; clients train on small batches and keep glibc's
defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
KEPT_BYTES = 256 << 20
"""Blocks up to this size come from the heap, and up to this much free memory stays at its top."""


def keep_large_blocks(limit_bytes: int = KEPT_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit_bytes`` (bytes) in this process and let
    threads started from now on share the main heap. Returns False, changing nothing, where the C
    library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(option, value) for option, value in
               ((M_MMAP_THRESHOLD, limit_bytes), (M_TRIM_THRESHOLD, limit_bytes), (M_ARENA_MAX, 1)))
