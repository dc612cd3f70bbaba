"""MLflow: one MLflow run per fedsec run, in a local file store by default.

Parameters, metrics per round (step: the round) and, at the end, the plots and summary as
artifacts. MLflow's telemetry is switched off before it is imported, and a tracking server can
only be a loopback address: nothing leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from fedsec.results import write_atomic
from fedsec.tracking.base import TRACKERS, Scalar, Tracker, TrackerParams, missing_package

STORE_DIR = "mlruns"
RUN_FILE = "mlflow-run.json"
"""Where, in the run directory, the tracked run's store and id are recorded (a resumed run deletes it)."""
LOOPBACK_HOSTS = {"localhost"}


def mlflow_module() -> ModuleType:
    """``mlflow``, imported with its telemetry off and its local file store allowed."""
    missing_package("mlflow", "mlflow")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["DO_NOT_TRACK"] = "true"
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    import mlflow

    return mlflow


def store_uri(location: str | Path) -> str:
    """A tracking URI: a path becomes a ``file:`` URI (the file store), a URI is kept."""
    text = str(location)
    return text if urlsplit(text).scheme in {"file", "sqlite", "http", "https"} else Path(text).resolve().as_uri()


@TRACKERS.register("mlflow")
class MlflowTracker(Tracker):
    """An MLflow run named after the run directory, tagged with its path. Opening deletes the run
    this run directory tracked before (a resumed run logs its kept records again)."""

    class Params(TrackerParams):
        name: Literal["mlflow"] = "mlflow"
        tracking_uri: str | None = Field(
            None, max_length=1000, description=f"Where runs are stored: a folder or file: URI (MLflow's file "
            "store), sqlite:///path.db, or http://127.0.0.1:PORT (a tracking server on this machine; loopback "
            f"only); default: {STORE_DIR}/ in the run directory (a sweep: in the sweep directory).")
        experiment: str | None = Field(
            None, min_length=1, max_length=200,
            description="MLflow experiment the run joins (default: the scenario's name; a sweep's cells: the "
            "sweep's name).")

        @field_validator("tracking_uri")
        @classmethod
        def _local(cls, uri: str | None) -> str | None:
            if uri is None:
                return uri
            parts = urlsplit(uri)
            if parts.scheme not in {"", "file", "sqlite", "http", "https"}:
                raise ValueError(f"{parts.scheme}: not a local store (give a folder, file:, sqlite: or "
                                 "http://127.0.0.1:PORT)")
            if parts.username or parts.password:
                raise ValueError("credentials do not belong in the scenario (MLflow reads "
                                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")
            if parts.scheme.startswith("http") and not _loopback(parts.hostname or ""):
                raise ValueError(f"{parts.hostname}: a tracking server must listen on a loopback address "
                                 "(127.0.0.1, ::1, localhost)")
            return uri

        def for_sweep(self, sweep_dir: Path, sweep_name: str, grid: Mapping[str, str]) -> MlflowTracker.Params:
            """The sweep's store and experiment unless the scenario names its own."""
            return super().for_sweep(sweep_dir, sweep_name, grid).model_copy(update={
                "tracking_uri": self.tracking_uri or store_uri(sweep_dir / STORE_DIR),
                "experiment": self.experiment or sweep_name})

    def __init__(self, params: Params, run_path: Path, run_name: str) -> None:
        super().__init__(params, run_path, run_name)
        mlflow = mlflow_module()
        from mlflow.exceptions import MlflowException

        self.entities = mlflow.entities
        self.uri = store_uri(params.tracking_uri or run_path / STORE_DIR)
        self.client = mlflow.MlflowClient(self.uri)
        record = run_path / RUN_FILE
        if record.exists():
            earlier = json.loads(record.read_text())
            try:
                mlflow.MlflowClient(earlier["tracking_uri"]).delete_run(earlier["run_id"])
            except MlflowException:
                pass  # already deleted, or its store removed: nothing left to replace
        name = params.experiment or run_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(name)
            except MlflowException:  # another cell of the sweep created it meanwhile
                experiment_id = self.client.get_experiment_by_name(name).experiment_id
        else:
            experiment_id = experiment.experiment_id
        run = self.client.create_run(experiment_id, run_name=run_path.name,
                                     tags={"fedsec.run_dir": str(run_path.resolve())})
        self.run_id = run.info.run_id
        write_atomic(record, json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}) + "\n")

    def log_params(self, params: Mapping[str, Scalar]) -> None:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        def text(value: Scalar) -> str:
            value = str(value)
            return value if len(value) <= MAX_PARAM_VAL_LENGTH else value[:MAX_PARAM_VAL_LENGTH - 1] + "…"

        self.client.log_batch(self.run_id, params=[self.entities.Param(k, text(v)) for k, v in params.items()])

    def log_round(self, round_number: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.entities.Metric(k, v, now, round_number)
                                                    for k, v in metrics.items()])

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if finished else "FAILED")


def _loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
