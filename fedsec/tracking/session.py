"""Every tracker of one run, opened together: the server's single entry point to tracking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsec.tracking.base import TRACKERS, Scalar, Tracker, TrackerParams, numeric_metrics


class TrackedRun:
    """The run's trackers (none: every call does nothing).

    Opening logs ``params`` and every round record the run directory already holds (``kept``: a
    resumed run's records up to its checkpoint), so that what is tracked always equals
    metrics.jsonl: a resumed run neither loses nor repeats a round.
    """

    def __init__(self, specs: Sequence[TrackerParams], run_path: Path, run_name: str,
                 params: Mapping[str, Scalar], kept: Sequence[Mapping[str, Any]]) -> None:
        self.trackers: list[Tracker] = []
        try:
            for spec in specs:
                self.trackers.append(TRACKERS.get(spec.name)(spec, run_path, run_name))
            for tracker in self.trackers:
                tracker.log_params({**params, **tracker.params.labels})
            for record in kept:
                self.log_round(record)
        except BaseException:
            self.close(finished=False)
            raise

    def log_round(self, record: Mapping[str, Any]) -> None:
        """One round record as metrics.jsonl holds it (its numbers are tracked)."""
        metrics = numeric_metrics(record)
        if not metrics:  # round 0 of a run without a data attack: nothing measured
            return
        for tracker in self.trackers:
            tracker.log_round(int(record["round"]), metrics)

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        """The finished run's plots and summary."""
        for tracker in self.trackers:
            tracker.log_artifacts(paths)

    def close(self, finished: bool) -> None:
        """End every tracked run (``finished``: the run wrote its summary)."""
        for tracker in self.trackers:
            tracker.close(finished)
        self.trackers = []
