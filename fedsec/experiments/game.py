"""Attacker-vs-defender zero-sum game over a sweep (after Kallas et al., "Strategic
Safeguarding", 2024): payoff matrix, mixed Nash equilibrium by linear programming.

The attacker (rows) maximises u_A = ASR x 1[MA > MA_min]: a backdoor only pays when the poisoned
model is still accurate enough to be deployed. The defender (columns) minimises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog


@dataclass(frozen=True)
class Equilibrium:
    """A mixed Nash equilibrium of a zero-sum game.

    ``row`` and ``column``: each player's probabilities over its strategies; ``value``: the row
    player's expected payoff when both play them.
    """

    row: np.ndarray
    column: np.ndarray
    value: float


def _maximin(payoff: np.ndarray) -> tuple[np.ndarray, float]:
    """The row player's optimal mixed strategy and the game value:
    maximise v subject to x^T A >= v (every column), sum x = 1, x >= 0."""
    m, n = payoff.shape
    objective = np.zeros(m + 1)
    objective[-1] = -1.0  # linprog minimises: minimise -v
    constraints = np.hstack([-payoff.T, np.ones((n, 1))])  # v - x^T A_j <= 0
    equality = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    result = linprog(objective, A_ub=constraints, b_ub=np.zeros(n), A_eq=equality, b_eq=[1.0],
                     bounds=[(0, None)] * m + [(None, None)], method="highs")
    if not result.success:
        raise RuntimeError(f"linear program failed: {result.message}")
    strategy = np.clip(result.x[:m], 0.0, None)
    return strategy / strategy.sum(), float(result.x[-1])


def solve_zero_sum(payoff: np.ndarray) -> Equilibrium:
    """Mixed equilibrium of the zero-sum game whose row player receives ``payoff[i, j]``
    (shape: row strategies x column strategies; finite values)."""
    payoff = np.asarray(payoff, dtype=float)
    if payoff.ndim != 2 or 0 in payoff.shape or not np.isfinite(payoff).all():
        raise ValueError(f"payoff must be a finite, non-empty matrix, got shape {payoff.shape}")
    row, value = _maximin(payoff)
    column, negated = _maximin(-payoff.T)  # the column player maximises -A^T
    return Equilibrium(row, column, (value - negated) / 2)  # both LPs give the value; average rounding


def attacker_utility(asr: float | None, ma: float | None, ma_min: float) -> float:
    """ASR x 1[MA > MA_min]; a run without an ASR (no backdoor measured) gives 0."""
    if asr is None or ma is None:
        return 0.0
    return float(asr) if ma > ma_min else 0.0


@dataclass(frozen=True)
class PayoffMatrix:
    """Attacker utility per (attacker strategy, defender strategy), averaged over seeds."""

    attacker_labels: list[str]
    defender_labels: list[str]
    payoff: np.ndarray
    runs: np.ndarray  # finished runs averaged in each cell


def payoff_matrix(
    rows: Sequence[dict[str, Any]], attacker_keys: Sequence[str], defender_keys: Sequence[str], ma_min: float,
) -> PayoffMatrix:
    """The payoff of every (attacker, defender) label combination found among finished rows.
    A strategy is the tuple of its keys' labels, shown joined by " / ". ValueError when a
    combination has no finished run."""
    def label(row: dict[str, Any], keys: Sequence[str]) -> str:
        return " / ".join(str(row[k]) for k in keys)

    finished = [r for r in rows if r.get("status") == "finished"]
    attackers = list(dict.fromkeys(label(r, attacker_keys) for r in finished))
    defenders = list(dict.fromkeys(label(r, defender_keys) for r in finished))
    total, runs = np.zeros((len(attackers), len(defenders))), np.zeros((len(attackers), len(defenders)))
    for r in finished:
        i, j = attackers.index(label(r, attacker_keys)), defenders.index(label(r, defender_keys))
        total[i, j] += attacker_utility(r.get("asr"), r.get("ma"), ma_min)
        runs[i, j] += 1
    empty = [(attackers[i], defenders[j]) for i, j in zip(*np.nonzero(runs == 0), strict=True)]
    if empty or not finished:
        raise ValueError(f"no finished run for (attacker, defender) {empty or 'any combination'}")
    return PayoffMatrix(attackers, defenders, total / runs, runs)
