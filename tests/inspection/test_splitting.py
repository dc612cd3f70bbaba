"""Adaptive multilevel splitting: its estimate agrees with closed-form rare-event probabilities
within its statistical error, and it never scores more particles than its budget."""

from __future__ import annotations

import math

import pytest
import torch

from fedsec.inspection.splitting import adaptive_multilevel_splitting


def gaussian_tail(t: float) -> float:
    """P(N(0, 1) > t)."""
    return 0.5 * math.erfc(t / math.sqrt(2))


@pytest.mark.parametrize(("dimension", "level"), [(1, 4.5), (10, 5.0)])
def test_the_estimate_agrees_with_the_closed_form(dimension: int, level: float) -> None:
    """P(max of d standard Gaussians > t) = 1 - (1 - tail(t))^d, from 2e-6 to 3e-6 here."""
    truth = -math.expm1(dimension * math.log1p(-gaussian_tail(level)))
    generator = torch.Generator().manual_seed(0)
    runs = [adaptive_multilevel_splitting(lambda z: z.max(1).values, (dimension,), level, 100, 0.1, 10, 0.5,
                                          10**6, generator) for _ in range(16)]
    assert all(r.reached for r in runs)
    estimates = torch.tensor([math.exp(r.log_probability) for r in runs], dtype=torch.float64)
    relative_std = math.sqrt(math.expm1(max(r.log_variance for r in runs)))
    assert abs(estimates.mean().item() / truth - 1) < 4 * relative_std / math.sqrt(len(runs))
    assert 0.5 * relative_std < estimates.std().item() / truth < 2 * relative_std  # it mixes as an ideal splitting


def test_the_budget_bounds_the_scored_particles() -> None:
    scored = [0]

    def score(z: torch.Tensor) -> torch.Tensor:
        scored[0] += len(z)
        return z.max(1).values

    result = adaptive_multilevel_splitting(score, (10,), 8.0, 50, 0.5, 5, 0.5, 2_000, torch.Generator().manual_seed(0))
    assert not result.reached and scored[0] == result.evaluations <= 2_000
    # half the particles die per level, a few more where copies that never moved tie at the quantile
    assert result.levels > 0 and 0.45**result.levels < math.exp(result.log_probability) <= 0.5**result.levels
    with pytest.raises(ValueError, match="cannot score 50 particles"):
        adaptive_multilevel_splitting(score, (10,), 8.0, 50, 0.5, 5, 0.5, 49, torch.Generator())
