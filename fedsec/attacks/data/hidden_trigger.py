"""Hidden Trigger Backdoor (Saha et al., AAAI 2020): correctly labelled poisons whose features
collide with those of triggered source images; the trigger itself is shown only at test time."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from fedsec.attacks.data.base import (
    DATA_ATTACKS,
    CraftingContext,
    DataAttack,
    DataAttackParams,
    PoisonedBatch,
    to_uint8,
)
from fedsec.attacks.data.collision import FeatureMap, feature_map, project_linf
from fedsec.attacks.data.patterns import PatternKind, make_pattern


def paste_patch(x: Tensor, patch: Tensor, generator: torch.Generator) -> Tensor:
    """Copy of uint8 ``x`` (B, C, H, W) with ``patch`` (C, s, s) pasted at a random place in each image."""
    size = patch.shape[-1]
    h, w = x.shape[-2:]
    rows = torch.randint(0, h - size + 1, (len(x),), generator=generator).tolist()
    cols = torch.randint(0, w - size + 1, (len(x),), generator=generator).tolist()
    out = x.clone()
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        out[i, :, r : r + size, c : c + size] = patch.to(x.device)
    return out


def matched_pairs(poison_features: Tensor, source_features: Tensor) -> Tensor:
    """For each poison, the source it is paired with (N,): greedily, the closest remaining pair in
    feature space first, each source used once (the authors' assignment)."""
    distances = torch.cdist(poison_features, source_features)
    pairs = torch.empty(len(poison_features), dtype=torch.long, device=distances.device)
    for _ in range(len(poison_features)):
        flat = int(distances.argmin())
        poison, source = divmod(flat, distances.shape[1])
        pairs[poison] = source
        distances[poison, :] = math.inf
        distances[:, source] = math.inf
    return pairs


def hidden_trigger_collision(
    features: FeatureMap, images: Tensor, triggered_sources: Tensor, epsilon: float, lr: float,
    iterations: int, decay: float, decay_every: int,
) -> tuple[Tensor, list[float]]:
    """Poisons (N, C, H, W) in 0..1 within L∞ ``epsilon`` of ``images`` whose features approach
    those of ``triggered_sources`` (N, C, H, W), re-paired each iteration by :func:`matched_pairs`;
    and the loss Σ ||f(z) − f(s̃)||² before each step. Gradient descent with learning rate ``lr``
    multiplied by ``decay`` every ``decay_every`` iterations."""
    source_features = features(triggered_sources).detach()
    poisons = images.clone()
    history = []
    for i in range(iterations):
        poisons.requires_grad_(True)
        poison_features = features(poisons)
        pairs = matched_pairs(poison_features.detach(), source_features)
        loss = ((poison_features - source_features[pairs]) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, poisons)
        history.append(loss.item())
        step = lr * decay ** (i // decay_every)
        poisons = project_linf(poisons.detach() - step * grad, images, epsilon)
    return poisons, history


@DATA_ATTACKS.register("hidden-trigger")
class HiddenTrigger(DataAttack):
    """Target-class images moved within L∞ ε until their features collide with triggered source
    images (:func:`hidden_trigger_collision`); labels kept, the patch shown only at test time.

    Poisons and sources come from the client's own partition; at test time the patch, at a random
    place, should send source_class inputs to target_label."""

    class Params(DataAttackParams):
        name: Literal["hidden-trigger"] = "hidden-trigger"
        target_mode: Literal["all-to-one"] = Field("all-to-one", description="Clean-label: all-to-one only.")
        poison_fraction: float = Field(
            0.3, ge=0.0, le=1.0,
            description="Share (0–1) of the client's target_label images turned into poisons (at most as "
            "many as it has source_class images).",
        )
        source_class: int = Field(1, ge=0, description="Class whose triggered inputs should go to target_label.")
        patch_size: int = Field(
            4, ge=1, le=1024,
            description="Side of the square trigger in pixels (the paper's 30 of 224, ~2% of the area).",
        )
        pattern: PatternKind = Field("random", description="Content of the trigger patch.")
        seed: int = Field(0, description="Seed of the random pattern and of the test-time trigger places.")
        epsilon: float = Field(16 / 255, gt=0.0, le=1.0, description="L∞ budget of each poison, on images in 0..1.")
        lr: float = Field(0.01, gt=0.0, description="Gradient-descent learning rate on images in 0..1.")
        iterations: int = Field(5_000, ge=1, le=100_000, description="Gradient steps.")
        decay: float = Field(0.95, gt=0.0, le=1.0, description="Factor applied to lr every decay_every steps.")
        decay_every: int = Field(2_000, ge=1, description="Steps between learning-rate decays.")

        @model_validator(mode="after")
        def _source_differs(self) -> HiddenTrigger.Params:
            if self.source_class >= self.num_classes:
                raise ValueError(f"source_class {self.source_class} is not below num_classes {self.num_classes}")
            if self.source_class == self.target_label:
                raise ValueError(f"source_class {self.source_class} must differ from target_label")
            return self

    params: Params

    def patch(self, channels: int) -> Tensor:
        """The trigger, uint8 (C, s, s)."""
        p = self.params
        return make_pattern(p.pattern, channels, p.patch_size, p.patch_size, seed=p.seed)

    def _train_trigger(self, x: Tensor) -> Tensor:
        raise NotImplementedError("hidden-trigger crafts its poisons with the model (see craft)")

    def _test_trigger(self, x: Tensor) -> Tensor:
        return paste_patch(x, self.patch(x.shape[1]), torch.Generator().manual_seed(self.params.seed))

    def eligible(self, y: Tensor) -> Tensor:
        return y == self.params.target_label

    def asr_mask(self, y: Tensor) -> Tensor:
        return y == self.params.source_class

    def check(self, image_shape: tuple[int, int, int], num_classes: int) -> list[str]:
        size = self.params.patch_size
        if size > min(image_shape[1:]):
            return [f"patch_size {size} does not fit {image_shape[1]}x{image_shape[2]} images"]
        return []

    def poison_count(self, y: Tensor) -> int:
        return min(super().poison_count(y), int((y == self.params.source_class).sum()))

    def surrogate_models(self) -> int:
        return 1

    def craft(self, x: Tensor, y: Tensor, context: CraftingContext) -> PoisonedBatch:
        """poison_count(y) target_label rows replaced by poisons, labels unchanged."""
        p, g = self.params, context.generator
        count = self.poison_count(y)
        pick = lambda rows: rows[torch.randperm(len(rows), generator=g)[:count].to(rows.device)]  # noqa: E731
        poison_rows = pick(self.eligible(y).nonzero().flatten())
        source_rows = pick((y == p.source_class).nonzero().flatten())
        mask = torch.zeros_like(y, dtype=torch.bool)
        x_out = x.clone()
        if count:
            device = next(context.models[0].parameters()).device
            to_float = lambda t: t.to(device).float().div(255.0)  # noqa: E731
            triggered = paste_patch(x[source_rows], self.patch(x.shape[1]), g)
            poisons, _ = hidden_trigger_collision(
                feature_map(context.models[0]), to_float(x[poison_rows]), to_float(triggered),
                p.epsilon, p.lr, p.iterations, p.decay, p.decay_every,
            )
            x_out[poison_rows] = to_uint8(poisons * 255.0).to(x.device)
            mask[poison_rows] = True
        return PoisonedBatch(x_out, y.clone(), mask)
