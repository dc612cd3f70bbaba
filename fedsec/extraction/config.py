"""The scenario's ``extraction`` section (pydantic).

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the attack registry
stays the single list of attacks; the package's ``__init__`` registers every attack before it
imports this module.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedsec.data.datasets import MAX_EXAMPLES
from fedsec.extraction.base import EXTRACTIONS
from fedsec.extraction.prada import PradaParams
from fedsec.models import MODELS

MAX_ATTACKS = 20
MAX_AUDIT_ROUNDS = 1_000

AttackSpec = Annotated[
    Union[tuple(EXTRACTIONS.get(name).Params for name in EXTRACTIONS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]


class ExtractionConfig(BaseModel):
    """Thieves that query the global model after some rounds and train copies of it; the copies are
    scored on the test images the thieves never saw and checked for the owner's watermark.

    Unknown keys are errors, values are checked on assignment and frozen, numbers are finite.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    rounds: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, max_length=MAX_AUDIT_ROUNDS,
        description=f"Rounds after which the thieves attack the new global model (1-based, at most "
        f"{MAX_AUDIT_ROUNDS:,} of them); rounds after the run's last are never reached.")
    at_end: bool = Field(True, description="Attack the final global model.")
    holdout: int = Field(
        5000, ge=1, le=MAX_EXAMPLES,
        description="Test images set aside, by a seeded draw, as the thieves' unlabelled in-distribution data "
        "(thief_data: holdout); copies are scored on the other test images. Less than the test images scored "
        "(data.test_samples or the whole test set).")
    substitute: Literal[tuple(MODELS.names())] | None = Field(
        None, description="Architecture of the copies (default: the victim's, model.name).")
    attacks: list[AttackSpec] = Field(
        min_length=1, max_length=MAX_ATTACKS,
        description=f"The extraction attacks (1 to {MAX_ATTACKS}), each with its name and parameters.")
    prada: PradaParams | None = Field(
        None, description="PRADA watches every attack's query stream and benign streams (none: no detector).")

    @model_validator(mode="after")
    def _something_due(self) -> Self:
        if not self.rounds and not self.at_end:
            raise ValueError("extraction: give rounds or at_end: true, else the thieves never attack")
        return self
