"""Model extraction: the victim's counted query interface, the thief's data, the contract every
attack follows and its registry (docs/extraction.md).

Images enter an attack as float32 tensors ``(N, C, H, W)`` in 0..1 on the victim's device (what
the models take); the thief's data starts as uint8 images like every dataset of the package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from fedsec.data.datasets import load_dataset
from fedsec.registry import Registry
from fedsec.training import MAX_BATCH, MAX_EPOCHS

MAX_QUERIES = 10_000_000
"""Most queries one attack may be granted."""

Output = Literal["labels", "probabilities"]
ThiefData = Literal["holdout", "noise", "digits"]


class ExtractionParams(BaseModel):
    """Base of every attack's ``Params``: what the thief may ask and how it trains its copy."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(description="Name the attack is registered under.")
    budget: int = Field(
        5000, ge=1, le=MAX_QUERIES,
        description=f"Most images the thief may submit to the victim (queries, at most {MAX_QUERIES:,}).")
    output: Output = Field(
        "labels", description="What the victim's API returns per query: labels (top-1 class) or probabilities "
        "(the whole softmax vector).")
    thief_data: ThiefData = Field(
        "holdout", description="The thief's unlabelled images: holdout (test images set aside by the "
        "extraction section, never used to score the copy), noise (uniform random pixels), digits "
        "(scikit-learn's 8x8 digits resized to the task's image shape).")
    epochs: int = Field(
        10, ge=1, le=MAX_EPOCHS, description=f"Passes over the answered queries per training of the copy "
        f"(at most {MAX_EPOCHS:,}).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the copy.")
    batch_size: int = Field(64, ge=1, le=MAX_BATCH, description=f"Images per training step (at most {MAX_BATCH:,}).")


class BudgetExhausted(RuntimeError):
    """A query batch that would take the thief past its budget (nothing of it was answered)."""


class Oracle:
    """The victim behind a prediction API: answers, counts and records every query.

    Parameters
    ----------
    victim : nn.Module
        The model queried; only its forward pass in eval mode is used.
    budget : int
        Most images answered; a batch that would exceed it raises :class:`BudgetExhausted`.
    output : "labels" or "probabilities"
        One-hot top-1 labels or the softmax vector.
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, victim: nn.Module, budget: int, output: Output, batch_size: int = 1000) -> None:
        self.victim, self.budget, self.output, self.batch_size = victim, budget, output, batch_size
        self.queries = 0
        self._images: list[Tensor] = []
        self._classes: list[Tensor] = []

    @property
    def remaining(self) -> int:
        """Queries left in the budget."""
        return self.budget - self.queries

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """Answers (N, classes) for float images ``x`` (N, C, H, W) in 0..1: one-hot labels or
        probabilities, on the images' device."""
        if len(x) > self.remaining:
            raise BudgetExhausted(f"{len(x)} queries asked, {self.remaining} left of a budget of {self.budget}")
        self.victim.eval()
        probabilities = torch.cat([self.victim(b).softmax(1) for b in x.split(self.batch_size)])
        classes = probabilities.argmax(1)
        self.queries += len(x)
        self._images.append(x.detach().flatten(1))
        self._classes.append(classes)
        if self.output == "labels":
            return nn.functional.one_hot(classes, probabilities.shape[1]).float()
        return probabilities

    def stream(self) -> tuple[Tensor, Tensor]:
        """Every query so far in order: flattened images (Q, C*H*W) and the victim's classes (Q,)."""
        if not self._images:
            raise ValueError("no query was made")
        return torch.cat(self._images), torch.cat(self._classes)


class Extraction(ABC):
    """An extraction attack with its validated parameters."""

    Params: ClassVar[type[ExtractionParams]]

    def __init__(self, params: ExtractionParams) -> None:
        self.params = params

    @abstractmethod
    def steal(self, oracle: Oracle, pool: Tensor, substitute: nn.Module, generator: torch.Generator) -> nn.Module:
        """Train ``substitute`` (freshly initialised, on the pool's device) from the oracle's answers
        to queries built from ``pool`` (float images in 0..1) and return it in eval mode.
        ``generator`` (CPU) drives every random choice."""


EXTRACTIONS: Registry[type[Extraction]] = Registry("extraction attack")


def build_extraction(spec: ExtractionParams) -> Extraction:
    """The attack ``spec`` names, with its validated parameters."""
    return EXTRACTIONS.get(spec.name)(spec)


def query_random(oracle: Oracle, pool: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Query ``count`` pool images drawn uniformly without replacement (at most the pool and the
    budget left). Returns the pool indices, the images and the answers."""
    count = min(count, len(pool), oracle.remaining)
    index = torch.randperm(len(pool), generator=generator)[:count].to(pool.device)
    return index, pool[index], oracle(pool[index])


def train_substitute(model: nn.Module, x: Tensor, targets: Tensor, params: ExtractionParams,
                     generator: torch.Generator) -> nn.Module:
    """Fit ``model`` to the answers ``targets`` (N, classes) with the cross-entropy against them
    (one-hot answers make it the usual cross-entropy); Adam, ``params.epochs`` shuffled passes."""
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    model.train()
    for _ in range(params.epochs):
        for batch in torch.randperm(len(x), generator=generator).to(x.device).split(params.batch_size):
            loss = -(targets[batch] * model(x[batch]).log_softmax(1)).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def thief_pool(source: ThiefData, holdout: Tensor, generator: torch.Generator) -> Tensor:
    """The thief's uint8 images shaped like ``holdout`` (N, C, H, W): the holdout itself, as many
    images of uniform noise, or the 1,797 digits resized (bilinear) and repeated over the channels."""
    if source == "holdout":
        return holdout
    c, h, w = holdout.shape[1:]
    if source == "noise":
        return torch.randint(0, 256, (len(holdout), c, h, w), generator=generator, dtype=torch.uint8)
    digits = load_dataset("digits")
    images = torch.cat([digits.train_x, digits.test_x]).float()
    resized = nn.functional.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).expand(-1, c, -1, -1).contiguous()


@torch.no_grad()
def agreement(copy: nn.Module, victim: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """The copy's accuracy on (x, y) and its fidelity: the share of ``x`` on which it predicts
    the victim's class (both 0..1; ``x`` float images in 0..1)."""
    copy.eval()
    victim.eval()
    ours = torch.cat([copy(b).argmax(1) for b in x.split(batch_size)])
    theirs = torch.cat([victim(b).argmax(1) for b in x.split(batch_size)])
    return (ours == y).float().mean().item(), (ours == theirs).float().mean().item()
