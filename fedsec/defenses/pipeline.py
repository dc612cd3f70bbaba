"""A scenario's defenses, run in order on one round's updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedsec.defenses.base import DEFENSES, Defense, Kind, UpdateBatch


class DefensePipeline:
    """Runs stages in order; ends with the example-weighted mean of the accepted rows if
    no stage set an aggregate.

    Order rule: pre-processing and screening stages come before the (at most one)
    aggregator, post-processing stages after it; ValueError otherwise.

    Parameters
    ----------
    stages : Sequence[Defense]
        The stages, in the order they run.
    """

    def __init__(self, stages: Sequence[Defense]) -> None:
        aggregated_by: str | None = None
        for stage in stages:
            if stage.kind in (Kind.PRE, Kind.SCREEN, Kind.AGGREGATE) and aggregated_by:
                raise ValueError(
                    f"{stage.kind.value} stage {stage.name!r} cannot follow {aggregated_by!r}, "
                    "which already produced the aggregate"
                )
            if stage.kind in (Kind.AGGREGATE, Kind.POST):
                aggregated_by = aggregated_by or stage.name
        self.stages = list(stages)

    @property
    def rejects(self) -> bool:
        """Whether some stage may reject rows (:attr:`Defense.rejects`); without one the pipeline
        makes no accept/reject decision and has no detection rates."""
        return any(stage.rejects for stage in self.stages)

    def client_level_epsilon(self, rounds: int, sample_rate: float) -> float | None:
        """The client-level ε a stage guarantees after ``rounds`` rounds that each take a client
        with probability ``sample_rate`` (:meth:`Defense.client_level_epsilon`); None when no
        stage gives one."""
        spent = (stage.client_level_epsilon(rounds, sample_rate) for stage in self.stages)
        return next((epsilon for epsilon in spent if epsilon is not None), None)

    def __call__(self, batch: UpdateBatch) -> UpdateBatch:
        """The batch after every stage, with ``aggregate`` and ``contributions`` set."""
        for stage in self.stages:
            batch = stage(batch)
        return batch.with_default_aggregate()

    def __repr__(self) -> str:
        return f"DefensePipeline({self.stages!r})"

    def state_dict(self) -> dict[str, dict[str, Any]]:
        """Each stage's state, keyed ``"<position>.<name>"``."""
        return {f"{i}.{stage.name}": stage.state_dict() for i, stage in enumerate(self.stages)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore what :meth:`state_dict` returned for the same list of stages."""
        expected = {f"{i}.{stage.name}": stage for i, stage in enumerate(self.stages)}
        if set(state) != set(expected):
            raise ValueError(f"state for stages {sorted(state)}, pipeline has {sorted(expected)}")
        for key, stage in expected.items():
            stage.load_state_dict(state[key])


def build_pipeline(specs: Sequence[Mapping[str, Any]]) -> DefensePipeline:
    """A pipeline from scenario entries ``{"name": <registered name>, **params}``.

    Unknown names raise KeyError (listing the known ones); bad parameters raise
    pydantic's ValidationError, for the scenario layer to format.
    """
    stages = []
    for spec in specs:
        params = dict(spec)
        name = params.pop("name")
        stages.append(DEFENSES.get(name)(**params))
    return DefensePipeline(stages)


def encrypted_defense_problem(index: int, name: str, mode: str = "ckks") -> str | None:
    """Why defense stage ``name`` cannot run on ciphertexts, as one line, or None when it can.

    Judged from the registered stage with its default parameters (:attr:`Defense.encryptable`).

    Parameters
    ----------
    index : int
        The stage's position in the scenario's ``defenses`` list, named in the message.
    name : str
        The stage's registered name.
    mode : str
        The scenario's ``encryption.mode``, named in the message.
    """
    if name not in DEFENSES:
        return f"defenses.{index}.name: unknown defense {name!r} (known: {', '.join(DEFENSES.names())})"
    stage = DEFENSES.get(name)()
    if stage.encryptable:
        return None
    usable = ", ".join(known for known in DEFENSES.names() if DEFENSES.get(known)().encryptable)
    return (
        f"defenses.{index}.name: {name!r} needs {stage.rows_reason}, which cannot run on CKKS ciphertexts; "
        f"with encryption.mode: {mode} use {usable}"
    )
