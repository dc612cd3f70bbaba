"""Privacy attacks on the federation: what a curious server learns from what it holds.

Gradient inversion reconstructs a client's training images from the update it sent; membership
inference tells members of the training data from other examples by a model's outputs. Each
attack is one file registered in :data:`PRIVACY_ATTACKS` under its scenario name.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from fedsec.params import float_state, unflatten
from fedsec.registry import Registry
from fedsec.training import ClientConfig


class AttackParams(BaseModel):
    """An attack's parameters: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    name: str


@dataclass(frozen=True)
class LocalTraining:
    """The round's public training configuration, sent with the global model to every client.

    The client runs ``local_epochs`` passes of SGD (``momentum``, ``weight_decay``) with batches
    of ``batch_size`` examples at learning rate ``lr``.
    """

    lr: float
    momentum: float
    weight_decay: float
    local_epochs: int
    batch_size: int

    def steps(self, num_examples: int) -> int:
        """SGD steps the client takes on ``num_examples`` examples."""
        return self.local_epochs * math.ceil(num_examples / self.batch_size)


@dataclass(frozen=True)
class ObservedUpdate:
    """What the attacker holds of one client's round: nothing of the client's data.

    ``model`` is the global model the client trained from (architecture and weights);
    ``update`` the (d,) Δ = w_client − w_global over the model's floating-point state;
    ``num_images`` how many examples the client trained on (reported with its reply).
    """

    model: nn.Module
    update: torch.Tensor
    training: LocalTraining
    num_images: int
    image_shape: tuple[int, int, int]
    num_classes: int

    def parameter_updates(self) -> dict[str, torch.Tensor]:
        """Δ split into the model's trainable parameters, by name."""
        parts = unflatten(self.update, float_state(self.model))
        return {name: parts[name] for name, _ in self.model.named_parameters()}


@dataclass(frozen=True)
class Reconstruction:
    """An inversion's output: images (N, C, H, W) in 0..1, labels (N,), the final attack loss."""

    images: torch.Tensor
    labels: torch.Tensor
    loss: float


class PrivacyAttack(ABC):
    """Base of every privacy attack: its validated parameters and its kind."""

    Params: ClassVar[type[AttackParams]]
    kind: ClassVar[Literal["inversion", "membership"]]

    def __init__(self, params: AttackParams) -> None:
        self.params = params


class GradientInversion(PrivacyAttack):
    """Reconstructs the images a client trained on from its update."""

    kind = "inversion"

    @abstractmethod
    def reconstruct(self, observed: ObservedUpdate, generator: torch.Generator) -> Reconstruction:
        """Images and labels that explain ``observed``; random starts drawn from ``generator``."""


@dataclass(frozen=True)
class AttackerData:
    """What a membership attacker holds besides the target model's outputs.

    ``pool_x``/``pool_y``: its own labelled uint8 images (N, C, H, W), disjoint from the
    federation's training data and from the non-members it is scored on; ``candidates_x``/
    ``candidates_y``: the uint8 images it will be asked about (members and non-members, unlabelled
    as such); ``build_model`` a fresh model of the target's architecture; ``training`` the clients'
    public training configuration; ``device`` where shadow models train.
    """

    pool_x: torch.Tensor
    pool_y: torch.Tensor
    candidates_x: torch.Tensor
    candidates_y: torch.Tensor
    build_model: Callable[[], nn.Module]
    training: ClientConfig
    device: torch.device


class MembershipInference(PrivacyAttack):
    """Scores examples by how likely they were in a model's training data."""

    kind = "membership"

    def prepare(self, data: AttackerData, generator: torch.Generator) -> None:
        """Everything the attack does before it sees the target model (shadow models); random
        choices from ``generator``. Nothing by default."""

    @abstractmethod
    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N,) membership scores of images ``x`` (N, C, H, W) in 0..1 with labels ``y``:
        higher means more likely a member."""

    @abstractmethod
    def threshold(self, member_scores: torch.Tensor) -> float:
        """The attack's decision threshold (a member when its score is at least this)."""


PRIVACY_ATTACKS: Registry[type[PrivacyAttack]] = Registry("privacy attack")


def build_attack(params: AttackParams) -> PrivacyAttack:
    """The attack that ``params`` names, configured by them."""
    return PRIVACY_ATTACKS.get(params.name)(params)
