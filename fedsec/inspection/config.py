"""The scenario's ``inspection`` section (pydantic).

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the inspector and repair
registries stay the single lists of methods; the package's ``__init__`` registers every method
before it imports this module.
"""

from __future__ import annotations

from typing import Annotated, Self, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedsec.data.datasets import MAX_EXAMPLES
from fedsec.inspection.base import INSPECTORS, REPAIRS

MAX_METHODS = 8

InspectorSpec = Annotated[
    Union[tuple(INSPECTORS.get(name).Params for name in INSPECTORS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]
RepairSpec = Annotated[
    Union[tuple(REPAIRS.get(name).Params for name in REPAIRS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]


class InspectionConfig(BaseModel):
    """The server's inspection of the global model, and its optional repair; records go to
    ``inspection.jsonl``, reconstructed triggers to ``inspection/`` in the run directory.

    Unknown keys are errors, values are checked on assignment and frozen, numbers are finite.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    every: int | None = Field(
        None, ge=1, le=100_000, description="Rounds between two inspections (after rounds every, 2 x every, "
        "...); none: no periodic inspection.")
    at_end: bool = Field(True, description="Inspect the final global model after the last round.")
    methods: list[InspectorSpec] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=MAX_METHODS,
        description=f"Inspectors run, each with its parameters (at most {MAX_METHODS}, distinct names).")
    clean_samples: int = Field(
        500, ge=1, le=MAX_EXAMPLES, description="Clean images the server holds for inspection and repair: "
        "a seeded sample of the training set (never the test set), at most its size.")
    repair: RepairSpec | None = Field(  # type: ignore[valid-type]
        None, description="Repair applied to a copy of the inspected model, scored on the test set (none: no repair).")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.every is None and not self.at_end:
            raise ValueError("give every, at_end: true or both")
        names = [method.name for method in self.methods]
        if len(set(names)) != len(names):
            raise ValueError(f"methods: each inspector at most once, got {names}")
        return self
