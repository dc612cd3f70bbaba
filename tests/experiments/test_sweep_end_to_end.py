"""A real 2 x 2 sweep through ``fedsec sweep`` (each cell a Flower simulation in its own process,
two at a time): sweep.csv, sweep_ci.csv, sweep.md and report.html are written, running the same
command again runs nothing, and ``fedsec game`` solves the sweep's attacker/defender game.
Intervals over several seeds are checked on recorded cells (test_sweep_runner.py, test_report.py)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "rounds": 1,
    "data": {"dataset": "digits", "num_clients": 3, "partitioner": {"name": "iid"}, "test_samples": 300},
    "model": {"name": "mlp"},
    "client": {"local_epochs": 1, "batch_size": 32, "lr": 0.1},
    "resources": {"device": "cpu", "client_cpus": 2},  # one Ray actor per cell: two cells share 2 cores
    "attack": {"ids": [0], "data": {"name": "badnets", "target_label": 0}},
    "output": {"save_model": False, "plots": False},
}


def sweep(base: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsec", "sweep", str(base), "--grid", "defenses=[],[{name: median}]",
         "--grid", "attack.data.poison_fraction=0.2,0.8", "--seeds", "3", "--jobs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )


def test_sweep_writes_tables_and_report_and_resumes(tmp_path: Path) -> None:
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "sweep"

    first = sweep(base, out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 cells, 0 finished, 4 to run" in first.stdout

    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(row["status"] == "finished" for row in rows)
    assert {(r["defenses"], r["attack.data.poison_fraction"], r["seed"]) for r in rows} == {
        (d, p, "3") for d in ("none", "median") for p in ("0.2", "0.8")}
    for row in rows:
        assert 0 <= float(row["ma"]) <= 1 and 0 <= float(row["asr"]) <= 1
        summary = yaml.safe_load((out / row["run"] / "scenario.yaml").read_text())
        assert summary["seed"] == int(row["seed"])
        assert summary["data"]["dataset"] == "digits"

    table = (out / "sweep.md").read_text().splitlines()
    # settings every cell shares, blank line, header, rule, one line per grid combination, blank line, caption
    assert len(table) == 2 + 2 + 4 + 2 and table[0].startswith("Every run: attack badnets")
    assert all(re.search(r"\| 1 \| \d+\.\d \|", line) for line in table[4:8])  # one seed: no interval
    with open(out / "sweep_ci.csv", newline="") as f:
        assert [(int(row["ma_n"]), row["ma_ci95"]) for row in csv.DictReader(f)] == [(1, "")] * 4

    report = (out / "report.html").read_text()
    assert report.count('class="chart-spec"') >= 4  # heat-maps and curves
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", report, flags=re.S)
    assert not re.search(r'\bsrc=|href="(?!#)', markup)  # self-contained: no external reference

    summaries = sorted(out.glob("cells/*/summary.json"))
    stamps = [p.stat().st_mtime_ns for p in summaries]
    second = sweep(base, out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 cells, 4 finished, 0 to run" in second.stdout and "running" not in second.stdout
    assert sorted(out.glob("cells/*/summary.json")) == summaries
    assert [p.stat().st_mtime_ns for p in summaries] == stamps

    game = subprocess.run(
        [sys.executable, "-m", "fedsec", "game", str(out), "--attacker", "attack.data.poison_fraction",
         "--defender", "defenses", "--ma-min", "0.0"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert game.returncode == 0, game.stderr[-3000:]
    solved = json.loads((out / "game-attack.data.poison_fraction-vs-defenses.json").read_text())
    assert solved["attacker_labels"] == ["0.2", "0.8"] and solved["defender_labels"] == ["none", "median"]
    for strategy in (solved["attacker_strategy"], solved["defender_strategy"]):
        assert abs(sum(strategy) - 1) < 1e-9 and min(strategy) >= -1e-9
    payoff = solved["payoff"]
    attacker_guarantee = min(sum(p * payoff[i][j] for i, p in enumerate(solved["attacker_strategy"]))
                             for j in range(2))
    assert abs(attacker_guarantee - solved["value"]) < 1e-6  # the equilibrium strategy secures the value
