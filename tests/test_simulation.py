"""End-to-end Flower simulations (Ray backend) on small real data: run directory, determinism,
trackers, and the `fedsec run` process group listening on loopback only and stopping everything."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from processes import LOOPBACK, listening_addresses

from fedsec.fl.simulation import RunFailed, ray_init_kwargs, simulate
from tests.local_grid import run_locally
from fedsec.results import (
    CLIENTS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PARTITIONS_FILE,
    SUMMARY_FILE,
    RunDirectory,
    read_jsonl,
)
from fedsec.scenario import parse_scenario

ROOT = Path(__file__).parents[1]
SMALL = {
    "name": "small",
    "seed": 7,
    "rounds": 3,
    "data": {"dataset": "digits", "num_clients": 6, "partitioner": {"name": "dirichlet", "alpha": 1.0}},
    "model": {"name": "mlp"},
    "client": {"local_epochs": 2, "batch_size": 16, "lr": 0.1},
    "sampling": {"clients_per_round": 4},
    "resources": {"device": "cpu", "client_actors": 1},  # one actor process to start; `watched` runs the default
}


def run_small(tmp_path: Path, ray: bool = True, **changes: object) -> tuple[RunDirectory, dict]:
    """The small scenario with ``changes``, in a Flower simulation or (not ``ray``) over a LocalGrid."""
    output = {"dir": str(tmp_path), **changes.pop("output", {})}  # type: ignore[dict-item]
    scenario = parse_scenario({**SMALL, **changes, "output": output})
    run_dir = RunDirectory.create(tmp_path, scenario.name)
    return run_dir, (simulate(scenario, run_dir, show_progress=False) if ray else run_locally(scenario, run_dir))


def test_client_actors_size_the_private_cluster() -> None:
    def ray_cpus(resources: dict) -> object:
        return ray_init_kwargs(parse_scenario({**SMALL, "resources": resources}), {}).get("num_cpus")

    assert ray_cpus({"client_actors": 3, "client_cpus": 2}) == 6
    assert ray_cpus({"client_actors": 4, "client_cpus": 0.5}) == 2
    assert ray_cpus({}) is None  # Ray counts the machine's cores


def test_a_crashed_runtime_ends_the_run_with_its_cause_and_no_waiting_server(tmp_path: Path) -> None:
    """Flower's runtime cannot place a client needing more cores than the private cluster has: the
    run ends at once with that reason in one line, and the server stops waiting for replies."""
    started = time.monotonic()
    with pytest.raises(RunFailed, match=r"^the simulation runtime stopped: ValueError: ActorPool is empty"):
        run_small(tmp_path, resources={"device": "cpu", "client_cpus": 64})
    assert time.monotonic() - started < 120

    def server_threads() -> list[str]:  # Flower runs the ServerApp in a thread named after its target
        return [t.name for t in threading.enumerate() if "server_th_with_start_checks" in t.name]

    deadline = time.monotonic() + 5
    while server_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server_threads()


@dataclass
class WatchedRun:
    """A ``fedsec run`` process and what was seen of its process group."""

    run_dir: RunDirectory
    returncode: int
    listening: set[str]
    """Addresses the group's processes listened on while the run lasted (empty without ``ss``)."""
    left: set[int]
    """The group's processes still alive 10 s after the command returned."""


def group_pids(pgid: int) -> set[int]:
    listing = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return {int(pid) for pid, stat in (line.split() for line in listing.splitlines()) if not stat.startswith("Z")}


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> WatchedRun:
    """The small scenario with both trackers, run by the ``fedsec run`` command in a process group of its own."""
    root = tmp_path_factory.mktemp("watched")
    scenario = root / "small.yaml"
    scenario.write_text(yaml.safe_dump({**SMALL, "resources": {"device": "cpu"}, "output": {
        "dir": str(root / "runs"), "trackers": [{"name": "tensorboard"}, {"name": "mlflow"}]}}))
    with open(root / "stderr.txt", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "fedsec", "run", str(scenario), "--quiet"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        listening: set[str] = set()
        while process.poll() is None:
            if shutil.which("ss"):
                listening |= listening_addresses(group_pids(process.pid))
            time.sleep(0.3)
    deadline = time.time() + 10
    while group_pids(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert process.returncode == 0, (root / "stderr.txt").read_text()[-3000:]
    (run_dir,) = (root / "runs").iterdir()
    return WatchedRun(RunDirectory(run_dir), process.returncode, listening, group_pids(process.pid))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, watched: WatchedRun) -> list[tuple[RunDirectory, dict]]:
    """The watched Ray simulation, and the same scenario in one process (LocalGrid): the result
    may not depend on Ray."""
    summary = json.loads(watched.run_dir.file(SUMMARY_FILE).read_text())
    return [(watched.run_dir, summary), run_small(tmp_path_factory.mktemp("local"), ray=False)]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_simulation_listens_on_loopback_only_and_stops_everything(watched: WatchedRun) -> None:
    assert watched.listening, "no listening socket was observed (Ray must have run)"
    assert all(LOOPBACK.match(address) for address in watched.listening), watched.listening
    assert watched.left == set()


def test_run_directory_is_complete(two_runs: list[tuple[RunDirectory, dict]]) -> None:
    run_dir, summary = two_runs[0]
    for name in (METRICS_FILE, CLIENTS_FILE, SUMMARY_FILE, MODEL_FILE, PARTITIONS_FILE, "accuracy.png", "partitions.png"):
        assert run_dir.file(name).stat().st_size > 0, name
    rounds = run_dir.rounds()
    assert [r["round"] for r in rounds] == [1, 2, 3]
    for record in rounds:
        assert {"ma", "loss", "train_s", "round_s", "bytes_down", "bytes_up", "replies"} <= record.keys()
        assert record["replies"] == 4 and record["rejected"] == 0
    assert json.loads(run_dir.file(SUMMARY_FILE).read_text())["ma"] == rounds[-1]["ma"] == pytest.approx(summary["ma"])
    clients = read_jsonl(run_dir.file(CLIENTS_FILE))
    assert len(clients) == 12 and all(c["accepted"] for c in clients)
    partitions = json.loads(run_dir.file(PARTITIONS_FILE).read_text())
    assert sum(partitions["sizes"]) == 1437 and len(partitions["label_counts"]) == 6
    checkpoint = torch.load(run_dir.file(MODEL_FILE))
    assert checkpoint["model"] == "mlp" and checkpoint["dataset"] == "digits"


def test_trackers_receive_every_round_the_parameters_and_the_plots(
    two_runs: list[tuple[RunDirectory, dict]],
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fedsec.tracking.mlflow_tracker import STORE_DIR, mlflow_module, store_uri

    run_dir = two_runs[0][0]
    ma = [r["ma"] for r in run_dir.rounds()]
    events = EventAccumulator(str(run_dir.file("tensorboard")))
    events.Reload()
    assert [s.value for s in events.Scalars("ma")] == pytest.approx(ma)
    assert set(events.Tags()["images"]) == {"accuracy", "partitions"}
    mlflow = mlflow_module()
    mlflow.set_tracking_uri(store_uri(run_dir.file(STORE_DIR)))
    runs = mlflow.search_runs(experiment_names=["small"])
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    assert runs.iloc[0]["params.data.dataset"] == "digits"
    history = mlflow.MlflowClient().get_metric_history(runs.iloc[0]["run_id"], "ma")
    assert [m.step for m in history] == [1, 2, 3] and [m.value for m in history] == pytest.approx(ma)


def test_federation_learns(two_runs: list[tuple[RunDirectory, dict]]) -> None:
    rounds = two_runs[0][0].rounds()
    assert rounds[-1]["ma"] > 0.8 > rounds[0]["ma"] - 0.3
    assert rounds[-1]["loss"] < rounds[0]["loss"]


def test_same_seed_gives_identical_results(two_runs: list[tuple[RunDirectory, dict]]) -> None:
    (first, _), (second, _) = two_runs
    assert [r["ma"] for r in first.rounds()] == [r["ma"] for r in second.rounds()]
    assert [r["loss"] for r in first.rounds()] == [r["loss"] for r in second.rounds()]
    a, b = (torch.load(d.file(MODEL_FILE))["state_dict"] for d in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_attack_and_defense_are_scored_by_the_evaluator(tmp_path: Path) -> None:
    """Two sign-flipping clients against norm clipping + Krum: every round records detection
    counts, per-client roles, decisions and stage scores; Krum keeps the model learning."""
    run_dir, summary = run_small(
        tmp_path, ray=False,
        rounds=3,
        sampling={"clients_per_round": 6},
        attack={"ids": [0, 1], "model": {"name": "sign-flip", "scale": 5.0}},
        defenses=[{"name": "norm-clipping"}, {"name": "krum", "f": 1}],
    )
    for record in run_dir.rounds():
        assert record["tp"] + record["fn"] == 2 and record["fp"] + record["tn"] == 4
        assert record["accepted"] == 1  # Krum keeps one update
    clients = read_jsonl(run_dir.file(CLIENTS_FILE))
    attackers = [c for c in clients if c["role"] == "malicious"]
    assert len(attackers) == 6 and all(c["attacked"] and not c["accepted"] for c in attackers)
    assert all(set(c["scores"]) == {"norm-clipping", "krum"} for c in clients)
    assert summary["recall"] == 1.0 and summary["precision"] < 1.0
    assert summary["ma"] > 0.6
