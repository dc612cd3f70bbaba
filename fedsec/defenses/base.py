"""The contract every server-side defense follows (docs/architecture.md).

A stage sees an :class:`UpdateBatch` (one round's update matrix, example counts, the
global model and what earlier stages decided) and returns a new batch. Its inputs are
updates, weights and its own state, nothing else: client roles and the scenario's
client identities stay with the orchestrator and the evaluator (docs/architecture.md).

Randomness: stages that draw random numbers take them from ``UpdateBatch.generator``,
a ``torch.Generator`` the orchestrator seeds for every round (e.g. from the scenario
seed and the round number). Draws happen on the generator's device and are moved to
the batch's device, so the same seed gives the same noise on CPU and GPU, and a resumed
run needs no saved RNG state.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from fedsec.defenses._math import row_norms, weighted_mean
from fedsec.defenses.scalars import Scalar, ScalarBatch
from fedsec.registry import Registry


class Kind(Enum):
    """What a stage changes in the batch; fixes where it may sit in a pipeline."""

    PRE = "pre-processing"  # rewrites rows of ``updates`` (norm clipping)
    SCREEN = "screening"  # turns entries of ``accepted`` off, records scores
    AGGREGATE = "aggregator"  # sets ``aggregate``
    POST = "post-processing"  # rewrites ``aggregate`` (noise)


@dataclass(frozen=True)
class UpdateBatch:
    """One round's client updates and everything the defense pipeline decided so far.

    Stages return new batches (``dataclasses.replace``) and never modify tensors in place.

    Attributes
    ----------
    updates : Tensor
        (n, d) float, one flattened update ``w_client - w_global`` per row.
    weights : Tensor
        (n,) float, the example count each client reported.
    global_vector : Tensor
        (d,) the flattened global model the updates are relative to.
    accepted : Tensor
        (n,) bool, rows still in the game; stages may only turn entries off.
    aggregate : Tensor or None
        (d,) the aggregated update, once an aggregator (or the pipeline's default) set it.
    contributions : Tensor or None
        (n,) share of the aggregate each row put in, set with the aggregate: >= 0, summing to 1
        (0 for rows left out; all 0 when the aggregate is the zero update). Post-processing
        (noise, clipping of the new model) does not change it.
    scores : Mapping[str, Tensor]
        Per-stage (n,) scores by stage name; NaN for rows the stage did not see.
    info : Mapping[str, float]
        Scalars stages report, keyed ``"<stage>.<what>"``.
    server_update : Tensor or None
        (d,) update the server computed on its own root data (FLTrust), else None.
    generator : torch.Generator or None
        Source of every random draw of this round (see the module docstring).
    senders : Tensor or None
        (n,) int64 opaque handles, stable across rounds, of the connections the rows came
        from (e.g. a per-run random relabelling of transport node ids; never the scenario's
        client index or role). Only history-based defenses use them; None means row i comes
        from the same sender in every round.
    """

    updates: Tensor
    weights: Tensor
    global_vector: Tensor
    accepted: Tensor
    aggregate: Tensor | None = None
    contributions: Tensor | None = None
    scores: Mapping[str, Tensor] = field(default_factory=dict)
    info: Mapping[str, float] = field(default_factory=dict)
    server_update: Tensor | None = None
    generator: torch.Generator | None = None
    senders: Tensor | None = None

    def __post_init__(self) -> None:
        if self.updates.ndim != 2 or not self.updates.is_floating_point():
            raise ValueError(
                "updates must be a 2-D float tensor, "
                f"got {self.updates.dtype} of shape {tuple(self.updates.shape)}"
            )
        n, d = self.updates.shape
        expected = {
            "weights": (self.weights, (n,)),
            "global_vector": (self.global_vector, (d,)),
            "accepted": (self.accepted, (n,)),
            "aggregate": (self.aggregate, (d,)),
            "contributions": (self.contributions, (n,)),
            "server_update": (self.server_update, (d,)),
            "senders": (self.senders, (n,)),
        }
        for what, (value, shape) in expected.items():
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{what} must have shape {shape}, got {tuple(value.shape)}")
        if self.accepted.dtype != torch.bool:
            raise ValueError(f"accepted must be bool, got {self.accepted.dtype}")

    @classmethod
    def of(
        cls,
        updates: Tensor,
        weights: Tensor | None = None,
        global_vector: Tensor | None = None,
        *,
        server_update: Tensor | None = None,
        generator: torch.Generator | None = None,
        senders: Tensor | None = None,
    ) -> UpdateBatch:
        """A fresh batch with every row accepted; weights default to 1, the global model to 0."""
        n, d = updates.shape
        return cls(
            updates=updates,
            weights=torch.ones(n, device=updates.device) if weights is None else weights,
            global_vector=updates.new_zeros(d) if global_vector is None else global_vector,
            accepted=torch.ones(n, dtype=torch.bool, device=updates.device),
            server_update=server_update,
            generator=generator,
            senders=senders,
        )

    @property
    def n(self) -> int:
        """Number of rows (clients whose reply passed validation)."""
        return self.updates.shape[0]

    @property
    def d(self) -> int:
        """Length of a flattened update."""
        return self.updates.shape[1]

    def sender_keys(self) -> Tensor:
        """``senders``, or the row positions when none were given."""
        if self.senders is not None:
            return self.senders
        return torch.arange(self.n, device=self.updates.device)

    def accepted_indices(self) -> Tensor:
        """Positions of the accepted rows, (k,) int64."""
        return self.accepted.nonzero().squeeze(1)

    def subset(self, index: Tensor) -> UpdateBatch:
        """The rows at ``index`` only, all accepted, without earlier scores."""
        return replace(
            self,
            updates=self.updates.index_select(0, index),
            weights=self.weights.index_select(0, index),
            accepted=torch.ones(index.numel(), dtype=torch.bool, device=self.accepted.device),
            contributions=None,
            scores={},
            senders=self.sender_keys().index_select(0, index),
        )

    def mean_of_accepted(self) -> Tensor:
        """Example-weighted mean of the accepted rows; the zero update when none is accepted."""
        return weighted_mean(self.updates, self.weights * self.accepted)

    def with_default_aggregate(self) -> UpdateBatch:
        """This batch with ``aggregate`` set to :meth:`mean_of_accepted`, and its contributions,
        if no stage set it."""
        if self.aggregate is not None:
            return self
        mass = mean_contributions(self.updates, self.weights * self.accepted)
        return replace(self, aggregate=self.mean_of_accepted(), contributions=normalized(mass))

    def require_generator(self, stage: str) -> torch.Generator:
        """The round's generator; ValueError naming ``stage`` when there is none."""
        if self.generator is None:
            raise ValueError(f"defense {stage!r} draws random numbers: pass UpdateBatch.generator")
        return self.generator


@dataclass(frozen=True)
class Decision:
    """What a stage decided about the rows it was shown (all accepted), in their order.

    Attributes
    ----------
    keep : Tensor or None
        (k,) bool, False for rows the stage rejects.
    score : Tensor or None
        (k,) the stage's per-row statistic (documented by each stage).
    updates : Tensor or None
        (k, d) rewritten rows (pre-processing).
    aggregate : Tensor or None
        (d,) the aggregated update (aggregators, post-processing).
    contributions : Tensor or None
        (k,) aggregators only: how much of the aggregate each row put in, >= 0 on any scale
        (the stage normalizes it): the L2 norm of the row's part of the aggregate. None: the
        part of a row in the example-weighted mean of the kept rows (:func:`mean_contributions`),
        right for rules whose aggregate is that mean.
    info : Mapping[str, float]
        Scalars to report; the pipeline prefixes them with the stage name.
    """

    keep: Tensor | None = None
    score: Tensor | None = None
    updates: Tensor | None = None
    aggregate: Tensor | None = None
    contributions: Tensor | None = None
    info: Mapping[str, float] = field(default_factory=dict)


def normalized(mass: Tensor) -> Tensor:
    """``mass / sum(mass)`` for a (n,) mass >= 0; all 0 when it sums to 0 (nothing was aggregated)."""
    total = mass.sum()
    return torch.where(total > 0, mass / total, torch.zeros_like(mass))


def mean_contributions(rows: Tensor, weights: Tensor) -> Tensor:
    """Mass of each row's part ``w_i x_i / sum_j w_j`` of a weighted mean, up to the common factor:
    ``w_i |x_i|`` (L2), (n,). ``weights`` (n,) are 0 for rows left out."""
    return weights.to(rows.dtype) * row_norms(rows)


def coordinate_contributions(n: int, rows: Tensor, parts: Tensor) -> Tensor:
    """Mass of each of ``n`` rows in a coordinate-wise aggregate ``a_j = sum_m parts[m, j]``,
    where ``parts[m, j]`` came from row ``rows[m, j]`` (both (m, d)): the sum of the absolute
    values of the row's parts, (n,).

    Each coordinate's kept value counts with its magnitude. The sum over coordinates is additive,
    so a group of rows gets the same share whichever of them supplied each value (ties), which a
    norm of each row's scattered parts would not give.
    """
    return parts.new_zeros(n).index_add_(0, rows.reshape(-1), parts.reshape(-1).abs())


class BelowMinimum(Exception):
    """A stage was reached by fewer accepted updates than it needs to run as published.

    The server skips such a round and records the message as its reason.

    Attributes
    ----------
    stage : str
        The stage's scenario name with its parameters (:meth:`Defense.label`).
    needed : int
        Accepted updates the stage needs (count).
    got : int
        Accepted updates that reached it (count).
    """

    def __init__(self, stage: str, needed: int, got: int) -> None:
        super().__init__(stage, needed, got)
        self.stage, self.needed, self.got = stage, needed, got

    def __str__(self) -> str:
        return f"{self.stage} needs at least {self.needed} accepted updates, got {self.got}"


class DefenseParams(BaseModel):
    """Base of every stage's parameters: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Defense(ABC):
    """One pipeline stage, built from its scenario parameters.

    Subclasses set ``kind``, define a nested ``Params`` model (a :class:`DefenseParams`)
    and :meth:`decide`, and are registered with :func:`register`. Stateful stages also
    override :meth:`state_dict` and :meth:`load_state_dict`. A stage that decides from
    scalars of the rows (norms, Gram matrix, inner products with the global model) declares
    them in :meth:`needs` and writes that decision in :meth:`on_scalars`: it then runs on
    CKKS ciphertexts (:attr:`encryptable`); one that needs the rows says why in
    ``rows_reason``.

    Parameters
    ----------
    **params : Any
        Values for ``Params``; pydantic's ValidationError reports bad ones.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    Params: ClassVar[type[DefenseParams]] = DefenseParams
    rows_reason: ClassVar[str] = "the update rows themselves"
    """What the stage reads from the rows that scalars cannot give (one phrase, completes
    "needs ..."), for the refusal of a scenario that runs it on ciphertexts."""
    needs_root_data: ClassVar[bool] = False
    """Whether the stage needs the server's own update on a clean root dataset
    (``UpdateBatch.server_update``): a scenario running it must declare ``root_data``."""
    rejects: ClassVar[bool] = True
    """Whether the stage may turn rows off (``Decision.keep``). False for rules that only
    weight, clip or add noise: a pipeline of such stages makes no accept/reject decision, so
    it has no detection rates (docs/metrics.md), and :meth:`__call__` refuses a ``keep`` from them."""

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings()})"

    def label(self) -> str:
        """The stage's scenario name with its parameters, e.g. ``krum(f=1)``."""
        return f"{self.name}({self._settings()})"

    def _settings(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.params.model_dump().items())

    def __call__(self, batch: UpdateBatch) -> UpdateBatch:
        """Run the stage: :meth:`decide` on the accepted rows, recorded into the full batch.

        BelowMinimum (see :meth:`check_minimum`) before the stage decides anything.
        """
        if self.kind is Kind.POST:
            batch = batch.with_default_aggregate()
            return self._record(batch, None, batch, self.decide(batch))
        index = batch.accepted_indices()
        self.check_minimum(index.numel())
        if index.numel() == 0:
            if self.kind is Kind.AGGREGATE:
                return replace(batch, aggregate=batch.updates.new_zeros(batch.d),
                               contributions=batch.updates.new_zeros(batch.n))
            return batch
        view = batch if index.numel() == batch.n else batch.subset(index)
        return self._record(batch, index, view, self.decide(view))

    @abstractmethod
    def decide(self, batch: UpdateBatch) -> Decision:
        """The stage's decision on ``batch``, whose rows are all accepted.

        Post-processing stages see the whole batch, with its aggregate set.
        """

    def needs(self) -> frozenset[Scalar]:
        """What the stage reads from the rows (:class:`~fedsec.defenses.scalars.Scalar`).

        The rows themselves by default; a stage with an :meth:`on_scalars` returns the scalars
        it reads there (an empty set when it reads none), which is what the key authority
        decrypts for it under CKKS.
        """
        return frozenset({Scalar.ROWS})

    @property
    def encryptable(self) -> bool:
        """True when the stage decides from scalars only, so that it runs on ciphertexts."""
        return Scalar.ROWS not in self.needs()

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """The stage's decision made from the scalars of :meth:`needs` (the encrypted path).

        Same decision as :meth:`decide` on the same rows: ``batch`` covers every row of the
        round (``batch.accepted`` says which are still in), and the stage returns it with
        ``accepted``, ``scale``, ``coefficients``, ``noise``, scores and info updated.
        """
        raise NotImplementedError(
            f"defense {self.name!r} needs {self.rows_reason}: it has no path on scalars"
        )

    def minimum_rows(self) -> int:
        """Fewest accepted rows (count) the stage needs to run as published; 1 by default.

        Stages with a larger requirement (Krum's ``n >= 2f + 3``...) override it and cite it.
        Post-processing stages act on the aggregate and keep the default.
        """
        return 1

    def check_minimum(self, accepted: int) -> None:
        """BelowMinimum when ``accepted`` rows are left for the stage, some but fewer than
        :meth:`minimum_rows`.

        ``accepted`` counts the rows still accepted when the stage runs: rows that earlier
        stages rejected do not count. With none left there is nothing to aggregate, which
        is not a shortfall: stages pass the batch on and the aggregate is the zero update.
        Both the plaintext and the encrypted pipeline call this before running a stage.
        """
        if 0 < accepted < self.minimum_rows():
            raise BelowMinimum(self.label(), self.minimum_rows(), accepted)

    @staticmethod
    def _contributions(view: UpdateBatch, decision: Decision) -> Tensor:
        """An aggregator's ``decision.contributions``, or the default: each kept row's part of
        the example-weighted mean of the kept rows (:func:`mean_contributions`)."""
        if decision.contributions is not None:
            return decision.contributions.to(view.updates.dtype)
        kept = view.weights if decision.keep is None else view.weights * decision.keep
        return mean_contributions(view.updates, kept)

    def client_level_epsilon(self, rounds: int, sample_rate: float) -> float | None:
        """ε of the client-level (ε, δ) differential privacy the stage gives after ``rounds``
        rounds that each take a client with probability ``sample_rate``; None (the default) for a
        stage that gives none."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What must be saved to resume the stage (empty for stateless stages)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"defense {self.name!r} is stateless, got state {sorted(state)}")

    def _record(self, batch: UpdateBatch, index: Tensor | None, view: UpdateBatch, decision: Decision) -> UpdateBatch:
        """``batch`` with ``decision`` about ``view``, the rows at ``index`` (all rows when None), applied."""
        # rows is None when the decision covers every row in order.
        rows = index if index is not None and index.numel() < batch.n else None
        changes: dict[str, Any] = {}
        if decision.keep is not None and not self.rejects:
            raise RuntimeError(f"defense {self.name!r} declares rejects = False but returned keep")
        if decision.keep is not None:
            changes["accepted"] = (
                decision.keep if rows is None else batch.accepted.index_put((rows,), decision.keep)
            )
        if decision.score is not None:
            score = decision.score.to(batch.updates.dtype)
            if rows is not None:
                score = score.new_full((batch.n,), math.nan).index_put_((rows,), score)
            changes["scores"] = {**batch.scores, self.name: score}
        if decision.updates is not None:
            new = decision.updates
            changes["updates"] = new if rows is None else batch.updates.index_copy(0, rows, new)
        if decision.aggregate is not None:
            changes["aggregate"] = decision.aggregate
        elif self.kind is Kind.AGGREGATE:
            raise RuntimeError(f"aggregator {self.name!r} returned no aggregate")
        if self.kind is Kind.AGGREGATE:
            share = normalized(self._contributions(view, decision))
            changes["contributions"] = share if rows is None else share.new_zeros(batch.n).index_put((rows,), share)
        if decision.info:
            reported = {f"{self.name}.{key}": float(value) for key, value in decision.info.items()}
            changes["info"] = {**batch.info, **reported}
        return replace(batch, **changes)


D = TypeVar("D", bound=type[Defense])

DEFENSES: Registry[type[Defense]] = Registry("defense")


def register(name: str) -> Callable[[D], D]:
    """Class decorator: name the stage ``name`` and register it in :data:`DEFENSES`."""

    def decorator(cls: D) -> D:
        cls.name = name
        DEFENSES.register(name)(cls)
        return cls

    return decorator
