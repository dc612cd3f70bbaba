"""Removal attacks on a finished model file: the contract and the registry.

An attack takes a model (already a copy the caller may change) and a :class:`RemovalContext`
(the attacker's data and randomness) and returns the attacked model, which may be the same
object changed in place or a new one (distillation). ``strength`` names the parameter a
robustness table varies.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from fedsec.data.datasets import ImageDataset
from fedsec.registry import Registry
from fedsec.watermark.base import Watermark
from fedsec.watermark.settings import EmbeddingConfig


class RemovalParams(BaseModel):
    """Base of every removal attack's ``Params``: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name the removal attack is registered under.")


@dataclass(frozen=True)
class RemovalContext:
    """What the attacker has besides the model.

    Attributes
    ----------
    dataset : ImageDataset
        The task's data; the attacker's own data is a seeded sample of ``train_x``.
    build : callable
        Builds a freshly initialised model of the same architecture (for distillation).
    scheme : Watermark
        A scheme of the same kind as the owner's (the attacker knows the method, not the key).
    embedding : EmbeddingConfig
        The owner's embedding settings (an overwriting attacker embeds the same way).
    seed : int
        Seed of all the attacker's randomness.
    """

    dataset: ImageDataset
    build: Callable[[], nn.Module]
    scheme: Watermark
    embedding: EmbeddingConfig
    seed: int = 0

    def attacker_data(self, fraction: float) -> tuple[Tensor, Tensor]:
        """A seeded ``fraction`` (0..1) of the training set: the attacker's own labelled images."""
        n = len(self.dataset.train_y)
        index = torch.randperm(n, generator=self.generator("data"))[: max(1, round(fraction * n))]
        return self.dataset.train_x[index], self.dataset.train_y[index]

    def generator(self, purpose: str) -> torch.Generator:
        """A CPU generator for one named use, seeded from ``seed``."""
        digest = hashlib.sha256(f"{self.seed}:{purpose}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)


class Removal(ABC):
    """A removal attack with its validated parameters."""

    Params: ClassVar[type[RemovalParams]]
    strength: ClassVar[str]  # the Params field a robustness table varies

    def __init__(self, params: RemovalParams) -> None:
        self.params = params

    @abstractmethod
    def __call__(self, model: nn.Module, context: RemovalContext) -> nn.Module:
        """The attacked model."""


REMOVALS: Registry[type[Removal]] = Registry("removal attack")


def weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight matrices and kernels (parameters of two or more dimensions)."""
    return [p for p in model.parameters() if p.dim() > 1]


def build_removal(spec: dict) -> Removal:
    """The attack ``{"name": ..., **params}`` names, with its parameters validated."""
    cls = REMOVALS.get(str(spec.get("name")))
    return cls(cls.Params.model_validate(spec))
