"""The owner's settings that do not depend on the scheme: when it embeds, and how it fine-tunes."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WatermarkSection(BaseModel):
    """Same rules as every scenario section: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


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
    rollback_loss_ratio: float | None = Field(
        None, gt=1, description="Undo an embedding after which the model's weights are not finite, or its "
        "cross-entropy on the owner's clean images is not finite or exceeds this many times its value before "
        "(a diverged fine-tuning would hand the federation a broken model; the round records wm_rolled_back). "
        "Not part of any scheme's paper; null: never undo, as published.")
