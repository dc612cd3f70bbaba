"""Running a sweep's cells with a stand-in runner: finished cells are skipped, incomplete ones
start again from an empty directory, failures are reported; tables aggregate over seeds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.experiments.grid import SweepSpec, make_axis, parse_grid_option
from fedsec.experiments.sweep import (
    PlannedCell,
    grid_problem,
    plan,
    reusable_cells,
    run_sweep,
    write_sweep_file,
)
from fedsec.experiments.table import format_values, markdown_table, mean_ci95, read_csv, write_tables
from fedsec.scenario import ScenarioError

BASE = {"name": "b", "rounds": 1, "data": {"dataset": "digits", "num_clients": 3}, "model": {"name": "mlp"}}


@pytest.fixture
def spec(tmp_path: Path) -> SweepSpec:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    return SweepSpec(base, "t", (), (parse_grid_option("client.lr=0.1,0.2"),), (0, 1))


def fake_runner(log: list[str], fail: set[str] = frozenset()):  # noqa: ANN201
    """Writes a summary whose MA is the learning rate plus the seed / 10 (a known table)."""
    def run(p: PlannedCell) -> int:
        log.append(p.path.name)
        if p.path.name in fail:
            return 1
        ma = p.scenario.client.lr + p.scenario.seed / 10
        (p.path / "summary.json").write_text(json.dumps({"ma": ma, "asr": None, "rounds": 1, "wall_s": 2.0}))
        return 0
    return run


def test_second_invocation_runs_only_unfinished_cells(spec: SweepSpec, tmp_path: Path) -> None:
    planned = plan(spec, tmp_path / "out")
    log: list[str] = []
    outcome = run_sweep(spec, planned, runner=fake_runner(log))
    assert len(outcome.ran) == 4 and not outcome.skipped and not outcome.failed and len(log) == 4

    interrupted = planned[1]
    (interrupted.path / "summary.json").unlink()
    (interrupted.path / "metrics.jsonl").write_text('{"round": 1}\n')  # left by the killed run
    log.clear()
    again = run_sweep(spec, plan(spec, tmp_path / "out"), runner=fake_runner(log))
    assert log == [interrupted.path.name] and len(again.skipped) == 3
    assert not (interrupted.path / "metrics.jsonl").exists()  # re-run from scratch
    assert json.loads((interrupted.path / "cell.json").read_text()) == {"grid": {"client.lr": "0.1"}, "seed": 1}
    assert yaml.safe_load((interrupted.path / "scenario.yaml").read_text())["seed"] == 1


def test_failed_cells_are_reported_and_retried(spec: SweepSpec, tmp_path: Path) -> None:
    planned = plan(spec, tmp_path / "out")
    log: list[str] = []
    outcome = run_sweep(spec, planned, runner=fake_runner(log, fail={planned[0].path.name}))
    assert [p.path for p in outcome.failed] == [planned[0].path] and len(outcome.ran) == 3
    log.clear()
    assert len(run_sweep(spec, planned, runner=fake_runner(log)).ran) == 1 and log == [planned[0].path.name]


def test_jobs_run_cells_at_the_same_time(spec: SweepSpec, tmp_path: Path) -> None:
    planned = plan(spec, tmp_path / "out")
    running, peak, lock = [0], [0], threading.Lock()

    def slow(p: PlannedCell) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return fake_runner([])(p)

    assert len(run_sweep(spec, planned, jobs=2, runner=slow).ran) == 4 and peak[0] == 2


def test_tables_show_mean_and_confidence_interval_over_seeds(spec: SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    planned = plan(spec, out)
    run_sweep(spec, planned[:3], runner=fake_runner([]))  # the last cell never ran
    rows = write_tables(["client.lr"], planned, out)
    assert [r["status"] for r in rows] == ["finished"] * 3 + ["missing"]
    assert read_csv(out / "sweep.csv", ["client.lr"])[0] == {**rows[0], "asr": None}
    lines = (out / "sweep.md").read_text().splitlines()
    # lr 0.1: MA 10% and 20% over seeds 0 and 1 -> 15.0 ± t(0.975, 1) * 7.07 / sqrt(2) = 63.5;
    # lr 0.2: only seed 0 finished -> 20.0, no interval. No detection recorded: n/a.
    assert lines[0] == "Every run: attack none; defense fedavg; data digits, 3 clients, dirichlet α=0.5"
    assert lines[2] == ("| client.lr | seeds | MA (%) | ASR (%) | recall (%) | FPR (%) | malicious share (%) "
                        "| time (s) |")
    assert lines[4].startswith("| 0.1 | 2 | 15.0 ± 63.5 | – | n/a | n/a |")
    assert lines[5].startswith("| 0.2 | 1 | 20.0 | – | n/a | n/a |")
    assert (rows[0]["setting_attack"], rows[0]["setting_defense"], rows[0]["attack_budget"]) == ("none", "fedavg", 0.0)
    assert "95% confidence interval" in lines[-1]
    assert markdown_table(rows, ["client.lr"]) == (out / "sweep.md").read_text()
    ci = read_csv(out / "sweep_ci.csv", ["client.lr"])
    assert [(r["client.lr"], r["seeds"], r["ma_n"]) for r in ci] == [("0.1", 2, 2), ("0.2", 1, 1)]
    assert ci[0]["ma_mean"] == pytest.approx(0.15) and ci[0]["ma_ci95"] == pytest.approx(0.635, abs=1e-3)
    assert ci[1]["ma_mean"] == pytest.approx(0.2) and ci[1]["ma_ci95"] is None
    assert ci[0]["asr_mean"] is None and ci[0]["asr_n"] == 0


def test_three_seed_interval_is_the_student_t_half_width() -> None:
    """Values 1, 2, 3: mean 2, sample std 1, t(0.975, 2) = 4.302653, half-width 4.302653 / sqrt(3) = 2.484138."""
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(2.484138, abs=1e-6)
    assert format_values([0.1, 0.2, 0.3], "ma") == "20.0 ± 24.8"
    assert mean_ci95([0.7]) == (0.7, None) and format_values([0.7], "ma") == "70.0"


def test_watermark_columns_are_summarised() -> None:
    assert format_values([True, False, True], "wm_verified") == "2/3"
    assert format_values([10.0, 14.0], "wm_bits") == "12.0 ± 25.4"
    assert format_values([None, None], "asr") == "–"
    assert format_values([None, None], "recall") == "n/a"


def test_cells_finished_in_another_sweep_are_copied_not_run(spec: SweepSpec, tmp_path: Path) -> None:
    first = plan(spec, tmp_path / "a")
    run_sweep(spec, first, runner=fake_runner([]))
    tampered = next(p for p in first if p.scenario.client.lr == 0.2 and p.scenario.seed == 1)
    scenario = yaml.safe_load((tampered.path / "scenario.yaml").read_text())
    (tampered.path / "scenario.yaml").write_text(yaml.safe_dump({**scenario, "rounds": 2}))  # computed something else

    wider = SweepSpec(spec.base, "wider", (), (parse_grid_option("client.lr=0.2,0.3"),), (0, 1))
    planned = plan(wider, tmp_path / "b")
    reuse = reusable_cells(planned, [tmp_path / "a"])
    same = next(p for p in first if p.scenario.client.lr == 0.2 and p.scenario.seed == 0)
    assert list(reuse.values()) == [same.path]
    log: list[str] = []
    outcome = run_sweep(wider, planned, runner=fake_runner(log), reuse=reuse)
    assert [p.path for p in outcome.reused] == list(reuse) and len(log) == 3 == len(outcome.ran)
    copy = outcome.reused[0].path
    assert (copy / "summary.json").read_bytes() == (same.path / "summary.json").read_bytes()
    assert json.loads((copy / "cell.json").read_text())["reused_from"] == str(same.path)
    assert yaml.safe_load((copy / "scenario.yaml").read_text())["output"]["dir"] == str(tmp_path / "b" / "cells")
    with pytest.raises(ScenarioError, match="not a sweep directory"):
        reusable_cells(planned, [tmp_path])


def test_a_sweep_directory_refuses_another_grid(spec: SweepSpec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert grid_problem(spec, out) is None
    write_sweep_file(spec, out)
    more = SweepSpec(spec.base, "t", (), (parse_grid_option("client.lr=0.1,0.2,0.3"),), (0, 1, 2))
    assert grid_problem(more, out) is None  # more values and seeds of the same grid
    relabelled = SweepSpec(spec.base, "t", (), (make_axis("client.lr", {"0.1": 0.5}),), None)
    assert grid_problem(relabelled, out) == (f"{out}: made from another grid (client.lr=0.1 stood for other values "
                                            "there); give another --out, or remove the directory")
    result = CliRunner().invoke(app, ["sweep", str(spec.base), "--grid", "rounds=1,2", "--out", str(out)])
    assert result.exit_code == 2 and result.stderr == (
        f"{out}: made from another grid (keys client.lr; this sweep: rounds); give another --out, or remove the "
        "directory\n")


def test_cells_track_into_the_sweep_with_their_grid_labels(spec: SweepSpec, tmp_path: Path) -> None:
    plain = plan(spec, tmp_path / "out")
    trackers = [{"name": "mlflow"}, {"name": "tensorboard"}]
    spec.base.write_text(yaml.safe_dump({**BASE, "output": {"trackers": trackers}}))
    tracked = plan(spec, tmp_path / "out")
    assert [p.path for p in tracked] == [p.path for p in plain]  # trackers do not change what a cell computes
    mlflow, tensorboard = tracked[0].scenario.output.trackers
    assert mlflow.tracking_uri == (tmp_path / "out" / "mlruns").resolve().as_uri() and mlflow.experiment == "t"
    assert mlflow.labels == tensorboard.labels == {"grid.client.lr": "0.1"}


def test_client_level_epsilon_is_a_column_only_where_recorded() -> None:
    """4.85 and 4.90 over two seeds: mean 4.875, half-width t(0.975, 1) * 0.0354 = 0.318."""
    rows = [{"client.lr": "0.1", "status": "finished", "ma": 0.5, "client_dp_epsilon": epsilon,
             "setting_attack": "none", "setting_defense": "dp-fedavg", "setting_data": "digits"}
            for epsilon in (4.85, 4.90)]
    lines = markdown_table(rows, ["client.lr"]).splitlines()
    assert "| malicious share (%) | client-level ε | time (s) |" in lines[2]
    assert "| 4.875 ± 0.318 |" in lines[4]
    without = markdown_table([{**row, "client_dp_epsilon": None} for row in rows], ["client.lr"])
    assert "client-level ε" not in without
