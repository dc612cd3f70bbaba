"""Who attacks, and when: the rounds in which attackers act and which clients they are.

Rounds are numbered from 1, as Flower's ``server_round``; clients are partition ids
0 … num_clients − 1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AttackSchedule(BaseModel):
    """The rounds in which malicious clients attack (they behave honestly in the others)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_round: int = Field(1, ge=1, description="First round of attack (1-based).")
    end_round: int | None = Field(None, ge=1, description="Last round of attack, inclusive; None = to the end.")
    every: int = Field(1, ge=1, description="Attack every k-th round from start_round (1 = every round).")
    single_shot: int | None = Field(
        None, ge=1, description="Attack in this one round only; excludes start_round, end_round and every."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        windowed = self.start_round != 1 or self.end_round is not None or self.every != 1
        if self.single_shot is not None and windowed:
            raise ValueError("single_shot excludes start_round, end_round and every")
        if self.end_round is not None and self.end_round < self.start_round:
            raise ValueError(f"end_round {self.end_round} is before start_round {self.start_round}")
        return self

    def active(self, server_round: int) -> bool:
        """Whether attackers attack in ``server_round``."""
        if self.single_shot is not None:
            return server_round == self.single_shot
        in_window = self.start_round <= server_round and (self.end_round is None or server_round <= self.end_round)
        return in_window and (server_round - self.start_round) % self.every == 0


def malicious_clients(
    num_clients: int,
    *,
    fraction: float | None = None,
    ids: Iterable[int] | None = None,
    seed: int = 0,
    redraw_each_round: bool = False,
    server_round: int = 1,
) -> frozenset[int]:
    """The malicious clients among ``num_clients``, from an explicit list or drawn at random.

    Parameters
    ----------
    fraction : float, optional
        Share (0–1) of the clients that are malicious; round(fraction × num_clients),
        halves rounded up, distinct clients are drawn. Exactly one of fraction and ids.
    ids : iterable of int, optional
        The malicious clients' partition ids, used as they are.
    seed : int
        Seed of the draw; the same arguments always give the same clients.
    redraw_each_round : bool
        Draw a fresh set each round (from seed and server_round) instead of one for the run.
    server_round : int
        Current round (1-based); only used when redrawing.
    """
    if (fraction is None) == (ids is None):
        raise ValueError("give exactly one of fraction and ids")
    if ids is not None:
        chosen = frozenset(ids)
        if not all(0 <= i < num_clients for i in chosen):
            raise ValueError(f"malicious ids {sorted(chosen)} are not all in 0..{num_clients - 1}")
        return chosen
    assert fraction is not None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is not in [0, 1]")
    key = f"fedsec-roles:{seed}:{server_round if redraw_each_round else 'run'}"
    count = math.floor(fraction * num_clients + 0.5)
    return frozenset(random.Random(key).sample(range(num_clients), count))
