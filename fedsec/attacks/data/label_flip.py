"""Label flipping: no trigger, only wrong labels on the poisoned rows."""

from __future__ import annotations

from typing import Literal, Self

import torch
from pydantic import Field, model_validator
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS, DataAttack, DataAttackParams


@DATA_ATTACKS.register("label-flip")
class LabelFlip(DataAttack):
    """Relabels poisoned rows; images are untouched, at training and at test time.

    source-to-target: source_label → target_label (e.g. Tolpegin et al. 2020);
    all-to-one: every class → target_label; all-to-all: y → (y + 1) mod num_classes.
    """

    class Params(DataAttackParams):
        name: Literal["label-flip"] = "label-flip"
        target_mode: Literal["source-to-target", "all-to-one", "all-to-all"] = Field(  # type: ignore[assignment]
            "source-to-target", description="Which labels are flipped, and to what (see the class docstring)."
        )
        source_label: int = Field(
            6, ge=0, description="Class relabelled in source-to-target mode (6, Shirt → 0, T-shirt on Fashion-MNIST)."
        )

        @model_validator(mode="after")
        def _source_is_another_class(self) -> Self:
            if self.target_mode == "source-to-target" and not (
                self.source_label < self.num_classes and self.source_label != self.target_label
            ):
                raise ValueError(f"source_label {self.source_label} must be a class other than the target")
            return self

    params: Params

    def eligible(self, y: Tensor) -> Tensor:
        """Rows whose label the flip changes."""
        return self.asr_mask(y)

    def target_labels(self, y: Tensor) -> Tensor:
        if self.params.target_mode == "source-to-target":
            return torch.where(y == self.params.source_label, self.params.target_label, y)
        return super().target_labels(y)

    def asr_mask(self, y: Tensor) -> Tensor:
        """Source-class samples (source-to-target), non-target samples (all-to-one), all (all-to-all)."""
        if self.params.target_mode == "source-to-target":
            return y == self.params.source_label
        return super().asr_mask(y)

    def _train_trigger(self, x: Tensor) -> Tensor:
        return x.clone()
