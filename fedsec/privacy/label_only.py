"""Label-only membership inference by data augmentation (Choquette-Choo et al., ICML 2021)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from fedsec.privacy.base import PRIVACY_ATTACKS, AttackerData, MembershipInference
from fedsec.privacy.shadows import PREDICT_BATCH, ShadowParams, half_memberships, pool_sample, train_shadows

Augmentation = Literal["translate", "rotate"]

ATTACK_MODEL_LEARNING_RATES = (1e-3, 1e-2, 5e-3, 5e-2)
"""Adam learning rates the authors' code tries for the attack models; the one most accurate on the
shadow models' vectors is kept."""


def translations(distance: int) -> list[tuple[int, int]]:
    """(dy, dx) pixel shifts in the authors' order: none, then the 4 · ``distance`` shifts with
    |dy| + |dx| = ``distance``, walked from (distance, 0) through (0, −distance)."""
    shifts, position = [(0, 0)], (distance, 0)
    for step in ((-1, -1), (-1, 1), (1, 1), (1, -1)) if distance else ():
        for _ in range(distance):
            shifts.append(position)
            position = (position[0] + step[0], position[1] + step[1])
    return shifts


def translate(images: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """Images (N, C, H, W) moved by whole pixels ``shift`` = (dy, dx), edges repeated: what
    ``scipy.ndimage.shift(..., mode="nearest")`` does with whole-pixel shifts."""
    height, width = images.shape[-2:]
    rows = (torch.arange(height, device=images.device) - shift[0]).clamp_(0, height - 1)
    cols = (torch.arange(width, device=images.device) - shift[1]).clamp_(0, width - 1)
    return images[..., rows, :][..., cols]


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images (N, C, H, W) turned by ``degrees`` about their centre, as the authors' code turns them
    (``scipy.ndimage.rotate``: cubic spline, same size, zeros outside)."""
    from scipy import ndimage  # a quarter of a second to import: only for the attack that rotates

    turned = ndimage.rotate(images.cpu().numpy(), degrees, axes=(2, 3), reshape=False)
    return torch.from_numpy(turned).to(images.device)


def augmented(images: torch.Tensor, augmentation: Augmentation, magnitude: int) -> list[torch.Tensor]:
    """The images under each of the attack's augmentations, the unchanged images first."""
    if augmentation == "translate":
        return [translate(images, shift) for shift in translations(magnitude)]
    angles = np.linspace(-magnitude, magnitude, 2 * magnitude + 1)
    return [images if angle == 0 else rotate(images, float(angle)) for angle in angles]


@torch.no_grad()
def correctness(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, augmentation: Augmentation, magnitude: int
) -> torch.Tensor:
    """(N, A) 1.0 where ``model``'s label for augmentation a of image n (float, 0..1, on the model's
    device) is ``labels[n]``: all a label-only attacker sees; on the CPU."""
    model.eval()
    columns = []
    for batch, batch_labels in zip(images.split(PREDICT_BATCH), labels.split(PREDICT_BATCH), strict=True):
        columns.append(torch.stack([model(view).argmax(dim=1) == batch_labels.to(view.device)
                                    for view in augmented(batch, augmentation, magnitude)], dim=1).cpu())
    return torch.cat(columns).float()


def attack_network(inputs: int) -> nn.Module:
    """The authors' attack model for augmentation vectors: two layers of 10 leaky ReLUs (slope
    0.01), Glorot-normal weights, two outputs (non-member, member)."""
    layers = [nn.Linear(inputs, 10), nn.Linear(10, 10), nn.Linear(10, 2)]
    for layer in layers:
        nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    return nn.Sequential(layers[0], nn.LeakyReLU(0.01), layers[1], nn.LeakyReLU(0.01), layers[2])


def fit_attack_network(vectors: torch.Tensor, membership: torch.Tensor, lr: float,
                       generator: torch.Generator) -> nn.Module:
    """One epoch of Adam at ``lr`` over the shuffled examples one at a time (the authors' batch of
    1) on correctness ``vectors`` (N, A) labelled by ``membership`` (N,) in {0, 1}."""
    network = attack_network(vectors.shape[1])
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    for i in torch.randperm(len(vectors), generator=generator).tolist():
        optimizer.zero_grad()
        nn.functional.cross_entropy(network(vectors[i:i + 1]), membership[i:i + 1]).backward()
        optimizer.step()
    return network


@PRIVACY_ATTACKS.register("label-only")
class LabelOnly(MembershipInference):
    """The attacker sees predicted labels only. It asks for the label of each example under small
    augmentations (translations or rotations) and records which come back right: a model stays
    right around its training examples more often than around others.

    By default (``attack_model: nn``, the paper's) shadow models trained as the clients train
    give the correctness vectors of their members and non-members, and one attack network per
    class learns to tell them apart; the score is its member probability. ``attack_model:
    count`` trains no shadow models: the score is the share of augmentations labelled right, and
    a member one labelled right under all of them; with ``magnitude: 0`` that is the gap attack
    (Yeom et al.; ART's ``LabelOnlyGapAttack``).
    """

    class Params(ShadowParams):
        name: Literal["label-only"] = "label-only"
        augmentation: Augmentation = Field(
            "translate", description="translate: shifts by whole pixels; rotate: turns by whole degrees.")
        magnitude: int = Field(
            1, ge=0, le=8, description="Largest augmentation, in pixels (translate: no shift and the "
            "4 x magnitude shifts with |dy| + |dx| = magnitude) or degrees (rotate: every whole degree from "
            "-magnitude to magnitude); the authors' default is 1.")
        attack_model: Literal["nn", "count"] = Field(
            "nn", description="nn: per-class attack networks trained on shadow models (the paper's); count: the "
            "share of augmentations labelled right, no shadow models.")

    params: Params
    networks: list[nn.Module] | None = None

    def prepare(self, data: AttackerData, generator: torch.Generator) -> None:
        p = self.params
        if p.attack_model == "count":
            return
        x, y = pool_sample(data, p.pool_size, generator)
        keep = half_memberships(p.shadow_models, len(y), generator)
        images = x.to(data.device).float().div_(255)
        vectors = torch.cat([correctness(model, images, y, p.augmentation, p.magnitude)
                             for model in train_shadows(data, x, y, keep, p.epochs, generator)])
        self.fit(vectors, keep.reshape(-1).long(), y.repeat(p.shadow_models), generator)

    def fit(self, vectors: torch.Tensor, membership: torch.Tensor, labels: torch.Tensor,
            generator: torch.Generator) -> None:
        """Train one attack network per class on shadow correctness ``vectors`` (N, A),
        ``membership`` (N,) in {0, 1} and the examples' ``labels`` (N,); each class keeps the
        learning rate whose network is most accurate on its own vectors."""
        self.networks = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
            for label in range(int(labels.max()) + 1):
                rows = labels == label
                if not rows.any():
                    raise ValueError(f"label-only: the shadow data has no example of class {label}; raise pool_size")
                candidates = [fit_attack_network(vectors[rows], membership[rows], lr, generator)
                              for lr in ATTACK_MODEL_LEARNING_RATES]
                with torch.no_grad():
                    accuracy = [(net(vectors[rows]).argmax(dim=1) == membership[rows]).float().mean().item()
                                for net in candidates]
                self.networks.append(candidates[int(np.argmax(accuracy))])

    @torch.no_grad()
    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        vectors = correctness(model, x, y, p.augmentation, p.magnitude)
        if p.attack_model == "count":
            return vectors.mean(dim=1)
        if self.networks is None:
            raise ValueError("the label-only attack scores only after prepare")
        labels = y.cpu()
        if int(labels.max()) >= len(self.networks):
            raise ValueError(f"label-only: no attack network for class {int(labels.max())} (none in the shadow data)")
        member = torch.zeros(len(labels))
        for label, network in enumerate(self.networks):
            rows = labels == label
            member[rows] = network(vectors[rows]).softmax(dim=1)[:, 1]
        return member

    def threshold(self, member_scores: torch.Tensor) -> float:
        """count: labelled right under every augmentation; nn: a member probability of one half."""
        return 1.0 if self.params.attack_model == "count" else 0.5
