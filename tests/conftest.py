"""Shared fixtures: a private cache directory so tests never read a stale partition cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.getbasetemp() / "fedsec-cache"
    monkeypatch.setenv("FEDSEC_CACHE", str(cache))
    return cache
