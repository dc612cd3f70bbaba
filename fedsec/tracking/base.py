"""Experiment trackers: where a run's parameters, round metrics and final plots are also sent.

A tracker is one file registered in :data:`TRACKERS` under its scenario name, configured by its
validated ``Params``. The run directory stays the record of truth: a tracker is told the run's
parameters once, every round record, then the final plots and summary; a resumed run opens its
trackers again and replays the records it kept (see :class:`Tracker`).
"""

from __future__ import annotations

import importlib.util
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from fedsec.registry import Registry

Scalar = str | int | float | bool
"""A parameter value as trackers store it."""


class TrackerParams(BaseModel):
    """A tracker's parameters: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    name: str
    labels: dict[str, str] = Field(
        default_factory=dict, max_length=100,
        description="Extra parameters logged with the run, name: text (a sweep sets grid.<key>: label for "
        "each of its grid keys).")

    def for_sweep(self, sweep_dir: Path, sweep_name: str, grid: Mapping[str, str]) -> TrackerParams:
        """These parameters for one cell of a sweep: its ``grid`` labels (key: label) as extra
        parameters; a tracker that groups runs also gathers the sweep's cells in one place
        (``sweep_dir``: the sweep directory)."""
        return self.model_copy(update={"labels": {**self.labels, **{f"grid.{k}": v for k, v in grid.items()}}})


class Tracker(ABC):
    """One open tracked run of the run directory ``run_path`` (``run_name``: the scenario's name).

    Opening a tracker twice for one run directory (a resumed run) discards what the first one
    tracked: the resumed run logs every record it kept again, so each round is tracked once.
    """

    Params: ClassVar[type[TrackerParams]]

    def __init__(self, params: TrackerParams, run_path: Path, run_name: str) -> None:
        self.params = params
        self.run_path = run_path
        self.run_name = run_name

    @abstractmethod
    def log_params(self, params: Mapping[str, Scalar]) -> None:
        """The run's parameters (flattened keys ``section.key``)."""

    @abstractmethod
    def log_round(self, round_number: int, metrics: Mapping[str, float]) -> None:
        """The numeric metrics of one round (round 0: the initial model)."""

    @abstractmethod
    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """Files of the finished run (plots, summary)."""

    @abstractmethod
    def close(self, finished: bool) -> None:
        """Flush and end the tracked run; ``finished``: the run reached its summary."""


TRACKERS: Registry[type[Tracker]] = Registry("tracker")


class TrackerUnavailable(RuntimeError):
    """A tracker whose package is not installed."""


def missing_package(module: str, tracker: str) -> None:
    """TrackerUnavailable naming the extra to install when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise TrackerUnavailable(f"output.trackers: {tracker} needs the {module} package "
                                 "(pip install 'fedsec[tracking]')")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """Nested mappings (and lists of mappings, by index) as ``a.b.0.c`` keys; a list of scalars
    as its JSON text; None as ``"null"``."""
    flat: dict[str, Scalar] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, f"{path}."))
        elif isinstance(value, list):
            flat[path] = json.dumps(value)
        else:
            flat[path] = "null" if value is None else value
    return flat


def numeric_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number of a round record (nested keys flattened) except the round number
    itself; booleans and text are left out."""
    return {key: float(value) for key, value in flatten(record).items()
            if key != "round" and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}
