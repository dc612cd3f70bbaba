"""Runtime guards: checks that stand in front of the deployed model at inference.

A guard is fitted on clean data the server holds (a seeded sample of the training set, never the
test set), then, for a batch of inputs, scores each one (higher: more likely triggered), rejects
those above its threshold and passes the others on, purified where the guard purifies. Each guard
is one file registered in :data:`GUARDS` under its scenario name; a :class:`GuardChain` applies
several in order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from fedsec.registry import Registry


class GuardParams(BaseModel):
    """A guard's parameters: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    name: str
    frr: float = Field(
        0.01, gt=0, lt=1, description="False rejection rate the threshold is set at on the clean calibration "
        "inputs (0..1; 0.01: 1% of clean inputs rejected).")


@dataclass(frozen=True)
class CleanData:
    """The server's clean data: uint8 images (N, C, H, W) and int64 labels (N,) from the training set,
    with the dataset's class count and per-channel normalisation (0..1 scale)."""

    x: Tensor
    y: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def split(self, share: float, generator: torch.Generator) -> tuple[CleanData, CleanData]:
        """A seeded split: (1 - share) of the examples, then the other ``share``."""
        order = torch.randperm(len(self.y), generator=generator)
        cut = len(order) - max(1, round(share * len(order)))
        return self._take(order[:cut]), self._take(order[cut:])

    def _take(self, index: Tensor) -> CleanData:
        index = index.to(self.x.device)
        return CleanData(self.x[index], self.y[index], self.num_classes, self.mean, self.std)


@dataclass(frozen=True)
class Verdict:
    """A guard's answer for a batch: ``scores`` (N,) (higher: more suspicious), ``rejected`` (N,)
    bool, and ``inputs``: the uint8 images passed on (the inputs themselves unless the guard purifies)."""

    scores: Tensor
    rejected: Tensor
    inputs: Tensor


def images(x: Tensor) -> Tensor:
    """uint8 images -> float32 in 0..1 on their device."""
    return x.float().div(255.0)


@torch.no_grad()
def probabilities(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Softmax outputs of ``model`` on float images ``x`` in 0..1, in batches of ``batch_size``."""
    model.eval()
    return torch.cat([model(b).softmax(1) for b in x.split(batch_size)])


def threshold_at_frr(clean_scores: Tensor, frr: float) -> float:
    """The score above which a share ``frr`` of ``clean_scores`` lies (their (1 - frr) quantile)."""
    return torch.quantile(clean_scores.double(), 1 - frr).item()


def normal_threshold_at_frr(clean_scores: Tensor, frr: float) -> float:
    """The (1 - frr) quantile of a normal distribution fitted to ``clean_scores`` (mean and the
    maximum-likelihood standard deviation), as STRIP sets its boundary."""
    scores = clean_scores.double()
    mean, std = scores.mean().item(), scores.std(correction=0).item()
    return mean + std * math.sqrt(2) * torch.erfinv(torch.tensor(1 - 2 * frr, dtype=torch.float64)).item()


class Guard(ABC):
    """One runtime guard, configured by its validated ``Params``.

    Subclasses implement :meth:`score` and, where they learn something from clean data,
    :meth:`_fit`; :meth:`fit` then sets the threshold on clean inputs held out from that fitting.
    """

    Params: ClassVar[type[GuardParams]]
    fits_on_clean: ClassVar[bool] = True
    """Whether :meth:`_fit` uses clean data (the threshold is then set on a held-out part)."""
    calibration_share: ClassVar[float] = 0.5
    """Share of the clean data held out for the threshold when the guard fits on the rest."""

    def __init__(self, params: GuardParams) -> None:
        self.params = params
        self.threshold: float | None = None

    def _fit(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:  # noqa: B027
        """Learn what the guard needs from clean data (nothing by default)."""

    @abstractmethod
    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """(N,) suspicion scores of uint8 inputs ``x`` (higher: more likely triggered)."""

    def purify(self, model: nn.Module, x: Tensor) -> Tensor:
        """The inputs the guard passes on (unchanged by default)."""
        return x

    def examine(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scores and the inputs passed on, of uint8 inputs ``x`` (purifiers compute both at once)."""
        return self.score(model, x), self.purify(model, x)

    @property
    def rejects(self) -> bool:
        """Whether the guard rejects inputs (a pure purifier's threshold is infinite)."""
        return True

    def set_threshold(self, clean_scores: Tensor) -> float:
        """The rejection threshold from clean inputs' scores (their (1 - frr) quantile)."""
        return threshold_at_frr(clean_scores, self.params.frr)

    def fit(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:
        """Fit on clean data the server holds, then set the threshold at the configured FRR."""
        calibration = clean
        if self.fits_on_clean:
            fitting, calibration = clean.split(self.calibration_share, generator)
            self._fit(model, fitting, generator)
        self.threshold = self.set_threshold(self.score(model, calibration.x)) if self.rejects else math.inf

    def __call__(self, model: nn.Module, x: Tensor) -> Verdict:
        """Score, reject above the threshold, and purify a batch of uint8 inputs."""
        if self.threshold is None:
            raise RuntimeError(f"guard {self.params.name} is used before fit")
        scores, inputs = self.examine(model, x)
        return Verdict(scores, scores > self.threshold, inputs)


GUARDS: Registry[type[Guard]] = Registry("guard")


def build_guard(spec: Mapping[str, Any] | GuardParams) -> Guard:
    """The guard a scenario entry (``name`` plus its parameters) describes."""
    data = spec.model_dump() if isinstance(spec, BaseModel) else dict(spec)
    cls = GUARDS.get(data["name"])
    return cls(cls.Params.model_validate(data))


@dataclass(frozen=True)
class ChainVerdict:
    """A chain's answer: ``rejected`` (N,) by any guard, the ``inputs`` passed on to the model,
    and each guard's ``scores`` (N,), NaN for inputs an earlier guard already rejected."""

    rejected: Tensor
    inputs: Tensor
    scores: list[Tensor]


class GuardChain:
    """Guards applied in order: each sees the inputs the previous ones let through, as they left them."""

    def __init__(self, guards: Sequence[Guard]) -> None:
        self.guards = list(guards)

    def fit(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:
        """Fit every guard on the same clean data (a guard after a purifier sees it purified)."""
        for i, guard in enumerate(self.guards):
            guard.fit(model, clean, generator)
            if i + 1 < len(self.guards):
                clean = CleanData(guard.purify(model, clean.x), clean.y, clean.num_classes, clean.mean, clean.std)

    def __call__(self, model: nn.Module, x: Tensor) -> ChainVerdict:
        """Run the chain on uint8 inputs ``x``; rejected inputs are not passed further."""
        rejected = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        inputs = x.clone()
        all_scores = []
        for guard in self.guards:
            alive = (~rejected).nonzero().squeeze(1)
            scores = torch.full((len(x),), math.nan, device=x.device)
            if len(alive):
                verdict = guard(model, inputs[alive])
                scores[alive] = verdict.scores.float()
                rejected[alive] = verdict.rejected
                inputs[alive] = verdict.inputs
            all_scores.append(scores)
        return ChainVerdict(rejected, inputs, all_scores)
