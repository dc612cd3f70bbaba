"""Experiment trackers driven with a few synthetic rounds and read back with the trackers' own
readers: TensorBoard's event accumulator and ``mlflow.search_runs`` on the local file store."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from fedsec.tracking import TrackedRun, flatten, numeric_metrics
from fedsec.tracking.mlflow_tracker import RUN_FILE, STORE_DIR, MlflowTracker, mlflow_module, store_uri
from fedsec.tracking.tensorboard_tracker import TensorBoardTracker

PARAMS = {"data.dataset": "digits", "rounds": 3, "client.lr": 0.1, "attack": "null"}
ROUNDS = [{"round": 0, "asr_clean_baseline": 0.1},
          *({"round": r, "ma": 0.5 + r / 10, "asr": 0.2 * r, "recall": None, "skipped": "x", "bytes_up": 100 * r}
            for r in (1, 2, 3))]


def artifacts(run: Path) -> list[Path]:
    Image.new("RGB", (6, 4), (255, 0, 0)).save(run / "accuracy.png")
    (run / "summary.json").write_text(json.dumps({"ma": 0.8, "asr_clean_baseline": 0.1}))
    (run / "owner").mkdir()
    (run / "owner" / "key").write_text("secret")  # never an artifact: only what the server hands over
    return [run / "accuracy.png", run / "summary.json"]


def test_flatten_and_numeric_metrics() -> None:
    scenario = {"seed": 1, "attack": None, "defenses": [{"name": "krum", "f": 1}], "attack_ids": [0, 2],
                "data": {"partitioner": {"name": "dirichlet", "alpha": 0.5}}}
    assert flatten(scenario) == {"seed": 1, "attack": "null", "defenses.0.name": "krum", "defenses.0.f": 1,
                                 "attack_ids": "[0, 2]", "data.partitioner.name": "dirichlet",
                                 "data.partitioner.alpha": 0.5}
    assert numeric_metrics({"round": 2, "ma": 0.5, "recall": None, "skipped": "why", "ok": True,
                            "wm": {"p": 0.01}, "bad": float("nan")}) == {"ma": 0.5, "wm.p": 0.01}


def tensorboard_events(log_dir: Path):  # noqa: ANN201
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_event_files_hold_rounds_params_and_artifacts(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = TrackedRun([TensorBoardTracker.Params(labels={"grid.client.lr": "0.1"})], tmp_path, "t", PARAMS,
                     ROUNDS[:3])
    run.log_round(ROUNDS[3])
    run.log_artifacts(artifacts(tmp_path))
    run.close(finished=True)
    events = tensorboard_events(tmp_path / "tensorboard")
    assert [s.step for s in events.Scalars("ma")] == [1, 2, 3]
    assert [s.value for s in events.Scalars("ma")] == pytest.approx([0.6, 0.7, 0.8])
    assert [s.step for s in events.Scalars("asr_clean_baseline")] == [0]
    assert {"ma", "asr", "bytes_up", "asr_clean_baseline"} <= set(events.Tags()["scalars"])
    assert "recall" not in events.Tags()["scalars"] and "round" not in events.Tags()["scalars"]
    assert events.Tags()["images"] == ["accuracy"]
    assert "summary/text_summary" in events.Tags()["tensors"]
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["data.dataset"].string_value == "digits" and hparams["client.lr"].number_value == 0.1
    assert hparams["grid.client.lr"].string_value == "0.1"


def test_a_resumed_tensorboard_run_shows_each_round_once(tmp_path: Path) -> None:
    """The first process tracked rounds 1-3 but checkpointed only round 2: the resumed one replays
    rounds 1-2 and runs round 3 again (with a different time)."""
    first = TrackedRun([TensorBoardTracker.Params()], tmp_path, "t", PARAMS, ROUNDS)
    first.close(finished=False)
    again = [*ROUNDS[:3], {**ROUNDS[3], "bytes_up": 999}]
    second = TrackedRun([TensorBoardTracker.Params()], tmp_path, "t", PARAMS, again[:3])
    second.log_round(again[3])
    second.close(finished=True)
    events = tensorboard_events(tmp_path / "tensorboard")
    assert [(s.step, s.value) for s in events.Scalars("bytes_up")] == [(1, 100), (2, 200), (3, 999)]
    assert [s.step for s in events.Scalars("asr_clean_baseline")] == [0]


def test_mlflow_file_store_holds_one_run_per_run_directory_and_no_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow = mlflow_module()
    connections: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        connections.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    first = TrackedRun([MlflowTracker.Params(labels={"grid.attack": "badnets"})], run_dir, "quick", PARAMS, ROUNDS)
    first.close(finished=False)  # killed after round 3, before its checkpoint: resumed from round 2
    second = TrackedRun([MlflowTracker.Params(labels={"grid.attack": "badnets"})], run_dir, "quick", PARAMS,
                        ROUNDS[:3])
    second.log_round({**ROUNDS[3], "ma": 0.85})
    second.log_artifacts(artifacts(run_dir))
    second.close(finished=True)
    assert not connections

    uri = store_uri(run_dir / STORE_DIR)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["quick"])
    assert len(runs) == 1  # the interrupted run was deleted
    row = runs.iloc[0]
    assert row["status"] == "FINISHED" and row["tags.mlflow.runName"] == "run-1"
    assert row["params.data.dataset"] == "digits" and row["params.attack"] == "null"
    assert row["params.grid.attack"] == "badnets" and row["params.rounds"] == "3"
    assert row["metrics.ma"] == pytest.approx(0.85)
    client = mlflow.MlflowClient(uri)
    run_id = json.loads((run_dir / RUN_FILE).read_text())["run_id"]
    assert run_id == row["run_id"]
    history = client.get_metric_history(run_id, "ma")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([0.6, 0.7, 0.85])
    assert [m.step for m in client.get_metric_history(run_id, "asr_clean_baseline")] == [0]
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["accuracy.png", "summary.json"]


@pytest.mark.parametrize(("uri", "problem"), [
    ("http://10.0.0.5:5000", "loopback"), ("https://user:pw@127.0.0.1", "credentials"),
    ("databricks://profile", "not a local store"),
])
def test_tracking_uri_must_stay_on_this_machine(uri: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        MlflowTracker.Params(tracking_uri=uri)
    assert MlflowTracker.Params(tracking_uri="http://[::1]:5000").tracking_uri == "http://[::1]:5000"


def test_a_sweep_cell_joins_the_sweep_store_and_logs_its_grid_labels(tmp_path: Path) -> None:
    cell = MlflowTracker.Params().for_sweep(tmp_path, "grid-a", {"attack": "alie"})
    assert cell.tracking_uri == store_uri(tmp_path / STORE_DIR) and cell.experiment == "grid-a"
    assert cell.labels == {"grid.attack": "alie"}
    own = MlflowTracker.Params(tracking_uri="sqlite:///x.db", experiment="mine").for_sweep(tmp_path, "g", {})
    assert (own.tracking_uri, own.experiment) == ("sqlite:///x.db", "mine")
    assert TensorBoardTracker.Params().for_sweep(tmp_path, "g", {"k": "v"}).labels == {"grid.k": "v"}
