"""Injected client faults: dropout, crashes and slow replies, drawn per (round, client) from the seed.

The draws are the environment's, not the server's: dropout happens on the way to the client
(the message is never delivered), a crash is an exception inside the ClientApp, a slow client
sleeps before replying. Each fault is an independent draw, so a scenario's failures are the
same in every run with the same seed.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_DELAY_S = 86_400.0
"""Longest delay of a slow client, in seconds (one day)."""


class FaultsConfig(BaseModel):
    """Faults injected into the federation (all off by default; the scenario's ``faults`` section).

    Unknown keys are errors, values are checked on assignment and frozen, numbers are finite.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    dropout: float = Field(
        0.0, ge=0, le=1, description="Probability that a sampled client never receives the round's message."
    )
    crash: float = Field(
        0.0, ge=0, le=1, description="Probability that a client raises an exception instead of replying."
    )
    slow: float = Field(0.0, ge=0, le=1, description="Probability that a client is slow in a round.")
    slow_delay_s: float = Field(
        0.0, ge=0, le=MAX_DELAY_S,
        description=f"Seconds a slow client sleeps before replying (at most {MAX_DELAY_S:,.0f}).",
    )

    @model_validator(mode="after")
    def _delay_given(self) -> Self:
        if self.slow > 0 and self.slow_delay_s == 0:
            raise ValueError("slow > 0 needs slow_delay_s, the delay of slow clients in seconds")
        return self

_DROPOUT, _CRASH, _SLOW = 1, 2, 3


class ClientCrash(RuntimeError):
    """The exception an injected crash raises inside the ClientApp."""


def _draw(seed: int, round_number: int, partition: int, kind: int) -> float:
    return float(np.random.default_rng([seed, round_number, partition, 0xFA17, kind]).random())


def dropped(config: FaultsConfig, seed: int, round_number: int, partition: int) -> bool:
    """Whether the round's message to ``partition`` is lost."""
    return config.dropout > 0 and _draw(seed, round_number, partition, _DROPOUT) < config.dropout


def crashes(config: FaultsConfig, seed: int, round_number: int, partition: int) -> bool:
    """Whether ``partition`` crashes in this round."""
    return config.crash > 0 and _draw(seed, round_number, partition, _CRASH) < config.crash


def delay_s(config: FaultsConfig, seed: int, round_number: int, partition: int) -> float:
    """Seconds ``partition`` sleeps before replying in this round (0 when it is not slow)."""
    slow = config.slow > 0 and _draw(seed, round_number, partition, _SLOW) < config.slow
    return config.slow_delay_s if slow else 0.0
