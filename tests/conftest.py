"""Shared fixtures: a private cache directory so tests never read a stale partition cache, and
torch's thread count restored after every test (in-process runs compare with subprocess runs,
and a different thread count changes floating-point sums). Before any test worker starts, the
Adversarial Robustness Toolbox writes its configuration file once: on a fresh machine two
workers importing it at once race to create the file, and the loser fails to import."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without workers)
        import art.config  # noqa: F401 (writes ~/.art/config.json when missing)


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
