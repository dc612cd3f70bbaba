"""The scenario's ``watermark`` section (pydantic).

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the scheme registry
stays the single list of schemes; the base repeats the scenario sections' settings.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Importing the schemes registers them.
from fedsec.watermark import detector, fedcrypt, keyed_labels, mixup, noise_patterns, uchida  # noqa: F401
from fedsec.watermark.base import WATERMARKS


class WatermarkSection(BaseModel):
    """Same rules as every scenario section: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


SchemeSpec = Annotated[
    Union[tuple(WATERMARKS.get(name).Params for name in WATERMARKS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]


class WatermarkSchedule(WatermarkSection):
    """Rounds in which the owner embeds (it verifies in every round)."""

    mode: Literal["every-round", "once", "window"] = Field(
        "every-round", description="every-round: from start_round on; once: in start_round only; "
        "window: from start_round to end_round inclusive.")
    start_round: int = Field(1, ge=1, description="First embedding round (1-based).")
    end_round: int | None = Field(None, ge=1, description="Last embedding round of a window (inclusive).")

    @model_validator(mode="after")
    def _window(self) -> Self:
        if (self.mode == "window") != (self.end_round is not None):
            raise ValueError("end_round is required by mode window and only by it")
        if self.end_round is not None and self.end_round < self.start_round:
            raise ValueError(f"end_round {self.end_round} is before start_round {self.start_round}")
        return self

    def active(self, round_number: int) -> bool:
        """Whether the owner embeds after aggregating ``round_number``."""
        if self.mode == "once":
            return round_number == self.start_round
        return self.start_round <= round_number and (self.end_round is None or round_number <= self.end_round)


class EmbeddingConfig(WatermarkSection):
    """The owner's fine-tuning of the new global model: clean batches plus the watermark term."""

    target: float = Field(
        1.0, gt=0, le=1, description="Stop once the share of secret answers matched (trigger accuracy, "
        "or 1 − BER) reaches this (0..1).")
    max_steps: int = Field(100, ge=1, description="Most SGD steps per embedding.")
    lr: float = Field(0.01, gt=0, description="SGD learning rate of the owner's fine-tuning.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    batch_size: int = Field(64, ge=1, description="Clean examples per step.")
    trigger_batch_size: int = Field(32, ge=1, description="Trigger images per step (trigger-set schemes).")
    check_every: int = Field(5, ge=1, description="Steps between two checks of the target.")


class WatermarkConfig(WatermarkSection):
    """The model owner's watermark: scheme, when it is embedded, and the verification bound.

    The owner holds its secrets (trigger set, key, matrices) in the run directory's ``owner/``
    folder (owner-only permissions); round records carry statistics only.
    """

    scheme: SchemeSpec = Field(description="Watermark scheme; the other keys depend on the name.")
    schedule: WatermarkSchedule = Field(default_factory=WatermarkSchedule)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    owner_samples: int = Field(
        500, ge=1, description="Clean training images the owner fine-tunes on (a key-seeded sample of the "
        "training set, disjoint from the trigger images).")
    false_alarm: float = Field(
        1e-6, gt=0, lt=1, description="Verified when the p-value (false-alarm probability) is at most this.")
    key: Literal["random", "seeded"] = Field(
        "random", description="random: a fresh 256-bit key from os.urandom, kept owner-only in the run's "
        "owner/key; seeded: derived from the scenario seed, INSECURE (every client receives the scenario and "
        "can derive it): for tests and reproductions only.")
