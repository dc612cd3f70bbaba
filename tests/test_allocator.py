"""keep_large_blocks: a process that frees and reallocates 64 MB blocks stops page-faulting them in."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHURN = """
import resource, sys
from fedsec.allocator import keep_large_blocks
if sys.argv[1] == "kept":
    assert keep_large_blocks()
for i in range(6):
    if i == 2:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(64 << 20)  # zero-filled: every page is touched
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    """Minor page faults of the last four of six 64 MB allocations in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")
def test_freed_large_blocks_are_reused_without_page_faults() -> None:
    default, kept = faults("default"), faults("kept")
    assert default > 4 * (64 << 20) // 4096 * 0.9  # each allocation faults its 16,384 pages in again
    assert kept < default / 20
