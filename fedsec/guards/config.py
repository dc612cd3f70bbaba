"""The scenario's ``runtime_guards`` section (pydantic).

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the guard registry
stays the single list of guards; the package's ``__init__`` registers every guard before it
imports this module.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fedsec.guards.base import GUARDS

MAX_CHAINS = 16
MAX_GUARDS = 8
MAX_CLEAN_SAMPLES = 60_000

GuardSpec = Annotated[
    Union[tuple(GUARDS.get(name).Params for name in GUARDS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]
ChainName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class RuntimeGuardsConfig(BaseModel):
    """Runtime guards in front of the global model, measured by the evaluator on the test set;
    records go to ``guards.jsonl``. Unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    every: int | None = Field(
        None, ge=1, description="Rounds between two measurements (none: after the last round only; the last "
        "round is always measured).")
    chains: dict[ChainName, Annotated[list[GuardSpec], Field(min_length=1, max_length=MAX_GUARDS)]] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=MAX_CHAINS,
        description=f"Named chains (at most {MAX_CHAINS}), each an ordered list of at most {MAX_GUARDS} guards "
        "with their parameters; an input rejected by a guard goes no further.")
    clean_samples: int = Field(
        2000, ge=10, le=MAX_CLEAN_SAMPLES, description="Clean training images the server holds to fit and "
        f"calibrate the guards (a seeded sample of the training set; at most {MAX_CLEAN_SAMPLES:,}).")
    batch_size: int = Field(1024, ge=1, le=65_536, description="Images per forward pass of the deployed model.")

    def due(self, round_number: int, final: bool) -> bool:
        """Whether the guards are measured after ``round_number``."""
        return final or (self.every is not None and round_number % self.every == 0)
