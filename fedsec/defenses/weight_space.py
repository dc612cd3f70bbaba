"""Weight-space screening: the detector of Unnervik (EPFL thesis 2024, chapter 4) on the clients'
local models, fitted on those of the first rounds, which are assumed attack-free."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register
from fedsec.inspection.weight_space import WeightDensity, WeightSpaceSettings, neuron_vectors


@register("weight-space")
class WeightSpaceScreen(Defense):
    """Rejects clients whose local model (global + update) has one layer's neuron weight vectors
    unlikely under a PCA + Gaussian mixture density of clean local models.

    For ``warmup_rounds`` rounds the stage accepts every row and keeps the rows' layer as clean
    references; at the end of the last one it fits the density (:mod:`fedsec.inspection.weight_space`)
    and from the next round on rejects rows whose log-likelihood is below the threshold. Score:
    the log-likelihood (NaN during the warm-up). Stateful (the references), so a resumed run
    refits the same density.
    """

    kind = Kind.SCREEN
    rejects = True
    rows_reason = "the clients' local weights of one layer"

    class Params(WeightSpaceSettings, DefenseParams):
        warmup_rounds: int = Field(
            3, ge=1, le=1_000, description="Rounds (count) whose local models are taken as clean references.")
        neurons: int = Field(
            10, ge=1, description="Rows of the examined weight matrix (output neurons: 10 for the cnn's classifier).")
        inputs: int = Field(
            128, ge=1, description="Values per row (a neuron's inputs: 128 for the cnn's classifier).")
        offset: int | None = Field(
            None, ge=0, description="Index of the weight's first value in the flattened model vector; none: "
            "the model's classifier, whose neurons x inputs weights end just before its neurons bias values "
            "at the end of the vector.")

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._references: list[Tensor] = []
        self._rounds = 0
        self._density: WeightDensity | None = None

    def decide(self, batch: UpdateBatch) -> Decision:
        vectors = [neuron_vectors(self._weight(row), self.params.interpretation)
                   for row in batch.global_vector + batch.updates]
        if self._density is None:
            self._references += [v.cpu() for v in vectors]
            self._rounds += 1
            if self._rounds >= self.params.warmup_rounds:
                self._density = self.params.fit(self._references)
            return Decision()
        density = self._density
        scores = torch.tensor([density.score(v) for v in vectors], device=batch.updates.device)
        return Decision(keep=scores >= density.threshold, score=scores, info={"threshold": density.threshold})

    def _weight(self, model: Tensor) -> Tensor:
        """The examined (neurons, inputs) weight in a flattened model vector."""
        p = self.params
        size = p.neurons * p.inputs
        start = model.numel() - p.neurons - size if p.offset is None else p.offset
        if start < 0 or start + size > model.numel():
            raise ValueError(f"weight-space: a {p.neurons} x {p.inputs} weight at {start} does not fit a model "
                             f"of {model.numel()} values")
        return model[start : start + size].view(p.neurons, p.inputs)

    def state_dict(self) -> dict[str, Any]:
        if not self._references:
            return {}
        return {"references": torch.stack(self._references), "rounds": torch.tensor(self._rounds)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._references = list(state["references"].unbind()) if "references" in state else []
        self._rounds = int(state["rounds"]) if "rounds" in state else 0
        enough = self._references and self._rounds >= self.params.warmup_rounds
        self._density = self.params.fit(self._references) if enough else None
