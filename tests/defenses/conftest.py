"""Shared inputs for the defense tests: small matrices, fixed seeds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

Cohort = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _cohort(
    benign: int = 12, d: int = 40, seed: int = 0, spread: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``benign`` rows around a common direction ``mu`` (|mu| = 1, per-row noise ``spread``)."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=gen)
    mu /= mu.norm()
    rows = mu + spread * torch.randn(benign, d, generator=gen) / d**0.5
    return rows, mu


@pytest.fixture
def cohort() -> Cohort:
    """Factory of benign updates around a shared direction: ``cohort(benign, d, seed, spread)``."""
    return _cohort


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
