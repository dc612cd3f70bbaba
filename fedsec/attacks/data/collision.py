"""Feature collision: what the clean-label attacks crafted with the global model share.

Poisons are images of the attacker's class (``target_label``) from the client's own partition,
perturbed so that their penultimate-layer features collide with those of chosen target test
instances of another class (``target_class``); their labels stay correct. Crafting runs on
floats in 0..1 (the model's input) and the poisons are stored back as uint8.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from functools import partial

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from fedsec.attacks.data.base import CraftingContext, DataAttack, DataAttackParams, PoisonedBatch, to_uint8
from fedsec.models import penultimate

FeatureMap = Callable[[Tensor], Tensor]
"""Images (N, C, H, W) in 0..1 -> penultimate features (N, d), differentiable."""


def feature_map(model: nn.Module) -> FeatureMap:
    """The input of ``model``'s last linear layer as a differentiable function of its input.

    The model is put in eval mode and its parameters frozen: crafting only moves the images.
    """
    model.eval().requires_grad_(False)
    return partial(penultimate, model)


def project_linf(x: Tensor, center: Tensor, epsilon: float) -> Tensor:
    """``x`` clipped to the L∞ ball of radius ``epsilon`` around ``center`` and to 0..1."""
    return torch.minimum(torch.maximum(x, center - epsilon), center + epsilon).clamp(0.0, 1.0)


def select_targets(y: Tensor, target_class: int, count: int, seed: int) -> Tensor:
    """Indices (sorted) of ``count`` rows of class ``target_class`` in ``y``, drawn with ``seed``.

    The client and the evaluator call it on the same test labels, so they agree on the targets.
    """
    rows = (y == target_class).nonzero().flatten()
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).to(rows.device)
    return rows[order[:count]].sort().values


class CollisionParams(DataAttackParams):
    """Parameters of the instance-targeted collision attacks."""

    poison_fraction: float = Field(
        0.0, ge=0.0, le=0.0, description="Unused: poisons are crafted per target (poisons_per_target)."
    )
    target_class: int = Field(
        1, ge=0, description="True class of the target test instances the attack wants classified as target_label."
    )
    num_targets: int = Field(
        1, ge=1, le=10_000,
        description="Target test instances attacked at once, drawn with target_seed from the test set's "
        "target_class rows (the papers attack one per run).",
    )
    target_seed: int = Field(0, ge=0, description="Seed of the choice of target instances.")

    @model_validator(mode="after")
    def _target_class_differs(self) -> CollisionParams:
        if self.target_class >= self.num_classes:
            raise ValueError(f"target_class {self.target_class} is not below num_classes {self.num_classes}")
        if self.target_class == self.target_label:
            raise ValueError(f"target_class {self.target_class} must differ from target_label")
        return self


class CollisionAttack(DataAttack):
    """An instance-targeted clean-label attack: poisons crafted against chosen test instances.

    Subclasses say how many poisons each target gets and craft them (:meth:`collide`); choosing the
    targets and the base images, and writing the poisons into the partition, are done here.
    The evaluator scores ``targeted_success``: the share of the targets classified as target_label.
    """

    params: CollisionParams

    @property
    @abstractmethod
    def poisons_per_target(self) -> int:
        """Poisons crafted against each target instance."""

    @abstractmethod
    def collide(self, models: list[FeatureMap], bases: Tensor, targets: Tensor) -> Tensor:
        """Poisons (T, K, C, H, W) in 0..1 from ``bases`` (T, K, C, H, W) against ``targets``
        (T, C, H, W), with the features of ``models`` (this round's first)."""

    def surrogate_models(self) -> int:
        return 1

    def _train_trigger(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.params.name} crafts its poisons with the model (see craft)")

    def _test_trigger(self, x: Tensor) -> Tensor:
        return x

    def eligible(self, y: Tensor) -> Tensor:
        """Base images: rows of the attacker's class."""
        return y == self.params.target_label

    def asr_mask(self, y: Tensor) -> Tensor:
        """The chosen target instances among test labels ``y``."""
        p = self.params
        mask = torch.zeros_like(y, dtype=torch.bool)
        mask[select_targets(y, p.target_class, p.num_targets, p.target_seed)] = True
        return mask

    def test_triggers(self) -> dict[str, Callable[[Tensor], Tensor]]:
        return {"targeted_success": self.apply_test_trigger}

    def poison_count(self, y: Tensor) -> int:
        """``poisons_per_target`` for each target that still finds that many base images in ``y``."""
        k = self.poisons_per_target
        return min(self.params.num_targets, int(self.eligible(y).sum()) // k) * k

    def craft(self, x: Tensor, y: Tensor, context: CraftingContext) -> PoisonedBatch:
        """Poisons replace base images (rows of target_label drawn with the client's generator),
        labels unchanged; targets with too few bases left get fewer poisons (none when none are left)."""
        targets = context.test_x[self.asr_mask(context.test_y)]
        bases = self.eligible(y).nonzero().flatten()
        bases = bases[torch.randperm(len(bases), generator=context.generator).to(bases.device)]
        k = self.poisons_per_target
        attacked = min(len(targets), len(bases) // k)
        rows = bases[: attacked * k]
        mask = torch.zeros_like(y, dtype=torch.bool)
        x_out = x.clone()
        if attacked:
            device = next(context.models[0].parameters()).device
            to_float = lambda t: t.to(device).float().div(255.0)  # noqa: E731
            poisons = self.collide(
                [feature_map(m) for m in context.models],
                to_float(x[rows]).reshape(attacked, k, *x.shape[1:]),
                to_float(targets[:attacked]),
            )
            x_out[rows] = to_uint8(poisons.reshape(-1, *x.shape[1:]) * 255.0).to(x.device)
            mask[rows] = True
        return PoisonedBatch(x_out, y.clone(), mask)
