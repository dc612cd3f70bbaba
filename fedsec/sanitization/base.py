"""Data sanitization at honest clients: the interface every sanitizer implements, and its registry.

A client runs its sanitizer before local training, on its own data, with the current global model
as feature extractor: per class, the sanitizer flags the rows whose penultimate-layer features look
poisoned, and the client trains on the rest. Each sanitizer is one file registered in
:data:`SANITIZERS` under its scenario name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from fedsec.models import penultimate
from fedsec.registry import Registry


class SanitizerParams(BaseModel):
    """A sanitizer's parameters: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    name: str


class Sanitizer(ABC):
    """Flags suspected poisons in a client's labelled feature set, class by class."""

    Params: ClassVar[type[SanitizerParams]]

    def __init__(self, params: SanitizerParams) -> None:
        self.params = params

    def min_class_rows(self) -> int:
        """Fewest rows a class needs to be analysed; smaller classes are kept whole."""
        return 2

    @abstractmethod
    def flag_class(self, features: Tensor, seed: int) -> Tensor:
        """Suspected poisons among one class's features ``(n, d)`` float: bool ``(n,)``.
        ``seed``: the seed of any random choice (k-means starts, ICA)."""

    def flag(self, features: Tensor, labels: Tensor, seed: int) -> Tensor:
        """Suspected poisons among ``features`` ``(N, d)`` with labels ``(N,)``: bool ``(N,)``."""
        flagged = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
        for label in labels.unique().tolist():
            rows = (labels == label).nonzero().squeeze(1)
            if len(rows) >= self.min_class_rows():
                flagged[rows] = self.flag_class(features[rows].double(), seed + int(label)).to(labels.device)
        return flagged


SANITIZERS: Registry[type[Sanitizer]] = Registry("sanitizer")


def build_sanitizer(spec: Mapping[str, Any] | SanitizerParams) -> Sanitizer:
    """The sanitizer a scenario entry (``name`` plus its parameters) describes."""
    data = spec.model_dump() if isinstance(spec, BaseModel) else dict(spec)
    cls = SANITIZERS.get(data["name"])
    return cls(cls.Params.model_validate(data))


@torch.no_grad()
def penultimate_features(model: nn.Module, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """The inputs of ``model``'s last layer (its penultimate activations) on uint8 images ``x``,
    float ``(N, d)`` on ``device``, computed in batches of ``batch_size``."""
    was_training = model.training
    model.eval()
    try:
        captured = [penultimate(model, batch.to(device).float().div_(255.0)) for batch in x.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(captured) if captured else torch.zeros(0, 0, device=device)
