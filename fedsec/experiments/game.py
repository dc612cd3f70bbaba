"""Attacker-vs-defender zero-sum game over a sweep (after Kallas et al., "Strategic
Safeguarding", 2024): payoff matrix, mixed Nash equilibrium by linear programming.

The attacker (rows) maximises u_A = ASR x 1[MA > MA_min]: a backdoor only pays when the poisoned
model is still accurate enough to be deployed. The defender (columns) minimises it.

Cost-aware game (after Kallas, Tannous, Faraoun, "A Game-Theoretic Approach to Cost-Aware Backdoor
Attacks and Defenses in Deep Learning", 2025): each side also pays for what its strategy costs,

    u = ASR x 1[MA > MA_min] - c_poison x budget - c_detect x recall + c_ma x lost MA + c_compute x seconds,

still zero-sum (what one side pays counts for the other): the attacker pays for its poisoning
budget (share of clients malicious) and for being detected (recall of the defense), the defender
for the main accuracy it loses (below the best MA of the matrix) and for its aggregation time, so
a defense cannot win by wrecking the model. Every cost is in utility units, the scale of ASR
(1 = an ASR of 100%); zero costs give the plain game.
"""

from __future__ import annotations

import re
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
class Costs:
    """What each side pays in the cost-aware game, in utility units per unit of what it pays for
    (utility: the scale of ASR, 1 = 100%). All zero: the plain game."""

    poisoning: float = 0.0
    """Attacker, per unit of poisoning budget (share of clients malicious, 0..1)."""
    detection: float = 0.0
    """Attacker, per unit of detection recall (share of its updates the defense rejects, 0..1)."""
    lost_ma: float = 0.0
    """Defender, per unit of main accuracy below the best MA of the matrix (0..1)."""
    compute: float = 0.0
    """Defender, per second of aggregation time over the run."""

    @property
    def any(self) -> bool:
        """Whether some cost is not zero (the cost-aware game)."""
        return any((self.poisoning, self.detection, self.lost_ma, self.compute))


TERMS = ("gain", "poisoning", "detection", "lost_ma", "compute")
"""The payoff's terms: the attacker's gain ASR x 1[MA > MA_min], then each side's cost with the
sign it has in the attacker's payoff (the attacker's costs negative, the defender's positive)."""


def payoff_terms(row: dict[str, Any], ma_min: float, costs: Costs, best_ma: float) -> dict[str, float]:
    """One run's payoff terms (see :data:`TERMS`). A defense that never rejects detects nothing;
    ValueError when a cost is asked for a quantity the run did not record."""
    def measured(key: str, cost: float) -> float:
        value = row.get(key)
        if value is None and cost:
            raise ValueError(f"run {row.get('run', '?')}: no {key} recorded, so its cost cannot be counted")
        return float(value or 0.0)

    ma = row.get("ma")
    return {
        "gain": attacker_utility(row.get("asr"), ma, ma_min),
        "poisoning": -costs.poisoning * measured("attack_budget", costs.poisoning),
        "detection": -costs.detection * float(row.get("recall") or 0.0),
        "lost_ma": costs.lost_ma * max(0.0, best_ma - float(ma)) if ma is not None else 0.0,
        "compute": costs.compute * measured("aggregate_s", costs.compute),
    }


@dataclass(frozen=True)
class PayoffMatrix:
    """Attacker utility per (attacker strategy, defender strategy), averaged over seeds; ``terms``:
    each term of :data:`TERMS` averaged the same way (they sum to ``payoff``)."""

    attacker_labels: list[str]
    defender_labels: list[str]
    payoff: np.ndarray
    runs: np.ndarray  # finished runs averaged in each cell
    terms: dict[str, np.ndarray]
    best_ma: float | None


def payoff_matrix(
    rows: Sequence[dict[str, Any]], attacker_keys: Sequence[str], defender_keys: Sequence[str], ma_min: float,
    costs: Costs = Costs(),  # noqa: B008 (frozen)
) -> PayoffMatrix:
    """The payoff of every (attacker, defender) label combination found among finished rows.
    A strategy is the tuple of its keys' labels, shown joined by " / ". ValueError when a
    combination has no finished run."""
    def label(row: dict[str, Any], keys: Sequence[str]) -> str:
        return " / ".join(str(row[k]) for k in keys)

    finished = [r for r in rows if r.get("status") == "finished"]
    attackers = list(dict.fromkeys(label(r, attacker_keys) for r in finished))
    defenders = list(dict.fromkeys(label(r, defender_keys) for r in finished))
    best_ma = max((float(r["ma"]) for r in finished if r.get("ma") is not None), default=None)
    shape = (len(attackers), len(defenders))
    totals, runs = {term: np.zeros(shape) for term in TERMS}, np.zeros(shape)
    for r in finished:
        i, j = attackers.index(label(r, attacker_keys)), defenders.index(label(r, defender_keys))
        for term, value in payoff_terms(r, ma_min, costs, best_ma or 0.0).items():
            totals[term][i, j] += value
        runs[i, j] += 1
    empty = [(attackers[i], defenders[j]) for i, j in zip(*np.nonzero(runs == 0), strict=True)]
    if empty or not finished:
        raise ValueError(f"no finished run for (attacker, defender) {empty or 'any combination'}")
    terms = {term: total / runs for term, total in totals.items()}
    return PayoffMatrix(attackers, defenders, sum(terms.values()), runs, terms, best_ma)


def game_file(attacker_keys: Sequence[str], defender_keys: Sequence[str], where: Sequence[str] = ()) -> str:
    """The file one analysis is saved in: ``game-<attacker keys>-vs-<defender keys>[-<where>].json``,
    so that games over other axes (or other fixed labels) are kept side by side."""
    parts = ["+".join(attacker_keys), "vs", "+".join(defender_keys), *where]
    return "game-" + re.sub(r"[^A-Za-z0-9.+=_-]+", "_", "-".join(parts))[:150] + ".json"
