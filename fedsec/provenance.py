"""What a run ran on: package versions, the fedsec commit, the machine and torch's thread counts.

A seeded run is bit-for-bit repeatable only on the same software and with the same thread
counts: torch splits CPU reductions (sums, matrix products, convolutions) by thread, so another
count adds the same numbers in another order. Clients train with ``int(resources.client_cpus)``
threads; the server's process uses ``resources.server_threads``, or torch's default (the
machine's cores) when that is not set. The server appends one record per start (the first and
every resume) to ``environment.jsonl`` in the run directory.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

ENVIRONMENT_FILE = "environment.jsonl"
PACKAGES = ("fedsec", "torch", "torchvision", "flwr", "ray", "tenseal", "numpy", "scikit-learn")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def package_version(name: str) -> str | None:
    """The installed distribution's version, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def source_commit(package_dir: Path = Path(__file__).resolve().parent) -> str | None:
    """The commit checked out where fedsec is imported from (read from ``.git`` without running
    git; uncommitted changes are not detected); None outside a checkout."""
    git = package_dir.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        return None
    return None


def environment_record(device: torch.device, client_threads: int, resumed_after_round: int) -> dict[str, Any]:
    """One start of the server: versions, commit, machine, device and thread counts.

    Parameters
    ----------
    device : torch.device
        Where the server's tensors live.
    client_threads : int
        torch threads each client trains with.
    resumed_after_round : int
        Last round already recorded when this start resumed the run (0: a new run).
    """
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_after_round": resumed_after_round,
        "versions": {name: package_version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "fedsec_commit": source_commit(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "server_threads": torch.get_num_threads(),
        "client_threads": client_threads,
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }
