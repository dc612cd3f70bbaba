"""Adaptive multilevel splitting (Cérou & Guyader, Stoch. Anal. Appl. 2007; with the
Metropolis-Hastings kernel of Cérou, Del Moral, Furon & Guyader, Stat. Comput. 2012): the
probability that a score of a standard Gaussian vector exceeds a level, when that is rare.

Particles ``z ~ N(0, I)`` are scored; at each step the ``kill`` share with the lowest scores
defines the next intermediate level (the quantile), they are replaced by copies of uniformly
drawn survivors, and each copy makes ``steps`` Metropolis-Hastings moves that keep ``N(0, I)``
restricted to the scores above that level invariant: the proposal
``z' = (z + sigma * w) / sqrt(1 + sigma^2)``, ``w ~ N(0, I)``, is reversible for ``N(0, I)``, so a
move is accepted exactly when ``z'`` stays above the level. The estimate is
``prod_j (1 - K_j / N) * #{score > level} / N`` with ``K_j`` the particles killed at step j.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Score = Callable[[Tensor], Tensor]
"""Particles (m, *shape) -> their scores (m,); must be deterministic."""

LOW_ACCEPTANCE, HIGH_ACCEPTANCE, ADAPT = 0.2, 0.5, 1.25
"""The proposal's sigma is divided by ADAPT after a level whose moves were accepted less often
than LOW_ACCEPTANCE, multiplied by it above HIGH_ACCEPTANCE (between levels, so each level's
kernel stays fixed)."""


@dataclass(frozen=True)
class SplittingResult:
    """``log_probability``: natural log of the estimate of P(score > level); when the level was
    not ``reached`` (budget spent, or scores that no longer split) it estimates the probability of
    the last intermediate level instead, an upper bound's estimate. ``levels``: intermediate levels
    passed; ``evaluations``: particles scored; ``particles`` (N, *shape) and ``scores`` (N,): the
    last population; ``log_variance``: the ideal-mixing approximation of the variance of the
    estimate's log, ``sum_j K_j / (N (N - K_j)) + (1 - r) / (r N)`` with ``r`` the final share."""

    log_probability: float
    reached: bool
    levels: int
    evaluations: int
    particles: Tensor
    scores: Tensor
    log_variance: float


def adaptive_multilevel_splitting(
    score: Score,
    shape: tuple[int, ...],
    level: float,
    particles: int,
    kill: float,
    steps: int,
    sigma: float,
    budget: int,
    generator: torch.Generator,
    device: torch.device | None = None,
) -> SplittingResult:
    """Estimate P(score(Z) > level) for ``Z ~ N(0, I)`` of ``shape`` with ``particles`` particles,
    killing the ``kill`` share (0..1) with the lowest scores per level (at least one; ties at the
    quantile are killed together), ``steps`` moves per copy of proposal scale ``sigma``, scoring at
    most ``budget`` particles in all (the initial population included)."""
    n = particles
    if budget < n:
        raise ValueError(f"a budget of {budget} evaluations cannot score {n} particles")
    k = min(n - 1, max(1, round(kill * n)))

    def normal(count: int) -> Tensor:
        return torch.randn((count, *shape), generator=generator).to(device)

    z = normal(n)
    s = score(z)
    used, levels, log_p, log_var = n, 0, 0.0, 0.0
    reached = False
    while True:
        tau = s.kthvalue(k).values
        if tau > level:
            reached = True
            break
        killed = s <= tau
        count = int(killed.sum())
        if count == n or used + count * steps > budget:
            break
        log_p += math.log1p(-count / n)
        log_var += count / (n * (n - count))
        survivors = (~killed).nonzero().squeeze(1)
        parents = survivors[torch.randint(len(survivors), (count,), generator=generator).to(survivors.device)]
        copies, copy_scores = z[parents].clone(), s[parents].clone()
        accepted = 0
        for _ in range(steps):
            proposal = (copies + sigma * normal(count)) / math.sqrt(1 + sigma**2)
            proposed = score(proposal)
            move = proposed > tau
            copies[move], copy_scores[move] = proposal[move], proposed[move]
            accepted += int(move.sum())
        used += count * steps
        z[killed], s[killed] = copies, copy_scores
        levels += 1
        rate = accepted / (count * steps)
        sigma = sigma / ADAPT if rate < LOW_ACCEPTANCE else sigma * ADAPT if rate > HIGH_ACCEPTANCE else sigma
    if reached:
        share = float((s > level).float().mean())
        log_p += math.log(share)
        log_var += (1 - share) / (share * n)
    return SplittingResult(log_p, reached, levels, used, z, s, log_var)
