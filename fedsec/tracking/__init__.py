"""Experiment trackers (TensorBoard, MLflow): the run's parameters, round metrics, plots and
summary, also sent where researchers follow training curves."""

from typing import Annotated, Union

from pydantic import Field

from fedsec.tracking.base import TRACKERS, Tracker, TrackerParams, TrackerUnavailable, flatten, numeric_metrics
from fedsec.tracking import mlflow_tracker, tensorboard_tracker  # noqa: F401 (registers)
from fedsec.tracking.session import TrackedRun

TrackerSpec = Annotated[
    Union[tuple(TRACKERS.get(name).Params for name in TRACKERS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]

__all__ = ["TRACKERS", "TrackedRun", "Tracker", "TrackerParams", "TrackerSpec", "TrackerUnavailable", "flatten",
           "numeric_metrics"]
