"""Model inspectors: examine a global model for a backdoor; repairs that remove one.

An :class:`Inspector` gets the model, white-box (the ``nn.Module``) or black-box (a
:class:`QueryFunction` that answers class probabilities within a counted budget), and the clean
images the server holds; it returns an :class:`InspectionReport`. A :class:`Repair` returns a
repaired copy of the model. Each method is one file registered in :data:`INSPECTORS` or
:data:`REPAIRS` under its scenario name. Images are uint8 ``(N, C, H, W)`` (the server's copy of
the data); models take them scaled to 0..1.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from fedsec.registry import Registry


class InspectorParams(BaseModel):
    """A method's parameters: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    name: str


class QueryBudgetExceeded(RuntimeError):
    """A black-box inspector asked for more images than its query budget allows."""


class QueryFunction:
    """Black-box access to a model: class probabilities for images, at most ``budget`` images in all.

    Parameters
    ----------
    query : Callable[[Tensor], Tensor]
        Images (N, C, H, W) in 0..1 -> class probabilities (N, K).
    budget : int
        Most images answered over the object's life (count); each image is one query.
    """

    def __init__(self, query: Callable[[Tensor], Tensor], budget: int) -> None:
        self._query = query
        self.budget = budget
        self.used = 0

    @classmethod
    def of_model(cls, model: nn.Module, budget: int) -> QueryFunction:
        """The softmax outputs of ``model`` (in eval mode) behind a budget."""

        def query(x: Tensor) -> Tensor:
            model.eval()
            return model(x).softmax(1)

        return cls(query, budget)

    @property
    def remaining(self) -> int:
        """Queries left (count)."""
        return self.budget - self.used

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """Probabilities (N, K) for images ``x`` (N, C, H, W) in 0..1; QueryBudgetExceeded,
        answering nothing, when N is more than :attr:`remaining`."""
        if x.shape[0] > self.remaining:
            raise QueryBudgetExceeded(f"{x.shape[0]} queries asked, {self.remaining} of {self.budget} left")
        self.used += x.shape[0]
        return self._query(x)


Subject = nn.Module | QueryFunction
"""What an inspector examines: the model itself (white-box) or its query function (black-box)."""


@dataclass(frozen=True)
class Trigger:
    """A trigger as Neural Cleanse writes it: ``x' = (1 - mask) * x + mask * pattern``.

    ``mask`` (H, W) in 0..1, shared by the channels; ``pattern`` (C, H, W) in 0..1.
    """

    mask: Tensor
    pattern: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """The triggered images for ``x`` (N, C, H, W) in 0..1."""
        return (1 - self.mask) * x + self.mask * self.pattern


@dataclass(frozen=True)
class Finding:
    """What a method concludes; :meth:`Inspector.inspect` adds the queries and the time.

    ``score`` is the method's statistic and ``threshold`` the value it is compared with (each
    method says in which direction); ``targets`` the suspected target classes, most suspect first;
    ``trigger`` the reconstruction for the most suspect class (None for methods that make none);
    ``class_scores`` a per-class statistic where the method has one; ``class_triggers`` the
    reconstruction for every class where the method makes one per class (the evaluator scores the
    true target's, which the method itself never learns).
    """

    backdoored: bool
    score: float
    threshold: float
    targets: tuple[int, ...] = ()
    trigger: Trigger | None = None
    class_scores: tuple[float, ...] = ()
    class_triggers: tuple[Trigger, ...] = ()


@dataclass(frozen=True)
class InspectionReport(Finding):
    """A :class:`Finding` with its cost: ``queries`` (images the model was run on, count) and
    ``seconds`` (wall-clock)."""

    queries: int = 0
    seconds: float = 0.0


class Inspector(ABC):
    """One inspection method, built from its scenario parameters (:class:`InspectorParams`)."""

    name: ClassVar[str]
    Params: ClassVar[type[InspectorParams]] = InspectorParams
    needs_weights: ClassVar[bool] = True
    """Whether the method reads the model's weights or gradients (white-box only)."""
    suspicion_sign: ClassVar[int] = 1
    """+1 when a larger :attr:`Finding.score` is more suspect (anomaly indices, flagged above the
    threshold), -1 when a smaller one is (log-likelihoods, flagged below it): ``suspicion_sign *
    score`` ranks models from least to most suspect (the population benchmark's ROC and AUC)."""

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(name=self.name, **params)

    def query_budget(self) -> int | None:
        """Queries the method may use when it runs black-box; None: it gets the model (white-box)."""
        return None

    def references(self) -> int:
        """Clean reference models the method is fitted on (:meth:`fit`) before it inspects; 0: none."""
        return 0

    def fit(self, references: Sequence[nn.Module]) -> None:
        """Fit the method on clean reference models (only where :meth:`references` is not 0)."""
        raise NotImplementedError(f"inspector {self.name!r} is not fitted on reference models")

    def inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> InspectionReport:
        """Examine ``subject`` with the clean uint8 images ``x`` and labels ``y`` the server holds.

        ``generator`` is the source of every random draw. ValueError for a method that needs the
        weights when given a query function.
        """
        if isinstance(subject, QueryFunction):
            if self.needs_weights:
                raise ValueError(f"inspector {self.name!r} needs the model's weights (white-box access)")
            used, started = subject.used, time.perf_counter()
            finding = self._inspect(subject, x, y, generator)
            return _report(finding, subject.used - used, time.perf_counter() - started)
        seen = [0]
        handle = subject.register_forward_pre_hook(lambda _, args: seen.__setitem__(0, seen[0] + args[0].shape[0]))
        try:
            started = time.perf_counter()
            finding = self._inspect(subject, x, y, generator)
            return _report(finding, seen[0], time.perf_counter() - started)
        finally:
            handle.remove()

    @abstractmethod
    def _inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> Finding:
        """The method itself (see :meth:`inspect`)."""


def _report(finding: Finding, queries: int, seconds: float) -> InspectionReport:
    fields = {name: getattr(finding, name) for name in Finding.__dataclass_fields__}
    return InspectionReport(**fields, queries=queries, seconds=seconds)


@dataclass(frozen=True)
class RepairResult:
    """A repaired copy of the model, what was pruned, and the clean validation accuracy (0..1)
    before the repair, after pruning and after fine-tuning."""

    model: nn.Module
    pruned: tuple[int, ...]
    accuracy_before: float
    accuracy_pruned: float
    accuracy_after: float


class Repair(ABC):
    """One repair method, built from its scenario parameters; never changes the model it is given."""

    name: ClassVar[str]
    Params: ClassVar[type[InspectorParams]] = InspectorParams

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(name=self.name, **params)

    @abstractmethod
    def repair(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> RepairResult:
        """A repaired copy of ``model`` from the clean uint8 images ``x`` and labels ``y``."""


INSPECTORS: Registry[type[Inspector]] = Registry("inspector")
REPAIRS: Registry[type[Repair]] = Registry("repair")

M = TypeVar("M", bound=type[Inspector] | type[Repair])


def register(registry: Registry[Any], name: str) -> Callable[[M], M]:
    """Class decorator: name the method ``name`` and register it in ``registry``."""

    def decorator(cls: M) -> M:
        cls.name = name
        registry.register(name)(cls)
        return cls

    return decorator


def _build(registry: Registry[Any], spec: Mapping[str, Any] | InspectorParams) -> Any:
    values = spec.model_dump() if isinstance(spec, InspectorParams) else dict(spec)
    cls = registry.get(values.pop("name"))
    return cls(**values)


def build_inspector(spec: Mapping[str, Any] | InspectorParams) -> Inspector:
    """The inspector a scenario entry ``{"name": ..., **params}`` (or its validated Params) describes."""
    return _build(INSPECTORS, spec)


def build_repair(spec: Mapping[str, Any] | InspectorParams) -> Repair:
    """The repair a scenario entry ``{"name": ..., **params}`` (or its validated Params) describes."""
    return _build(REPAIRS, spec)
