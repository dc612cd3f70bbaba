"""Shared fixtures: a private cache directory so tests never read a stale partition cache, and
torch's thread count restored after every test (in-process runs compare with subprocess runs,
and a different thread count changes floating-point sums).

The tests that start whole process trees (Ray clusters, SuperLinks, ``fedsec`` commands) wait on
their processes for much of their time. Under pytest-xdist (``scripts/test.sh`` starts one
worker per core) they run in two lanes of about equal length, each lane on one worker at a
time, so that at most two process trees run at once and the unit tests fill the idle time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


PROCESS_LANES = {
    "test_deploy.py": "processes-a", "test_sweep_end_to_end.py": "processes-a",
    "test_flwr_run.py": "processes-a", "test_faults.py": "processes-a", "test_benchmarks.py": "processes-a",
    "test_resume.py": "processes-b", "test_encrypted_simulation.py": "processes-b",
    "test_ray_cluster.py": "processes-b", "test_simulation.py": "processes-b", "test_kill_resume.py": "processes-b",
    "test_hostile_inputs.py": "processes-b",
    "test_resume_refusals.py": "processes-b", "test_custody.py": "processes-b",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        lane = PROCESS_LANES.get(item.path.name)
        if lane is not None:
            item.add_marker(pytest.mark.xdist_group(lane))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "fedsec-cache"
    monkeypatch.setenv("FEDSEC_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True)
def restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
