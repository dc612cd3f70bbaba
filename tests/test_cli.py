"""Command-line commands other than run/validate (those are in test_scenario/test_simulation)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.results import RunDirectory


def test_resolve_prints_defaults_and_single_keys() -> None:
    full = CliRunner().invoke(app, ["resolve", "scenarios/quickstart.yaml"])
    assert full.exit_code == 0 and "min_partition_size: 10" in full.stdout
    one = CliRunner().invoke(app, ["resolve", "scenarios/quickstart.yaml", "--set", "data.num_clients=30",
                                   "--key", "data.num_clients"])
    assert one.stdout.strip() == "30"
    missing = CliRunner().invoke(app, ["resolve", "scenarios/quickstart.yaml", "--key", "data.nope"])
    assert missing.exit_code == 2


def test_summary_table_reads_run_directories(tmp_path: Path) -> None:
    run_dir = RunDirectory.create(tmp_path, "demo")
    run_dir.write_json("summary.json", {"rounds": 2, "ma": 0.81234, "asr": 0.5, "wall_s": 12.25})
    run_dir.append_round({"round": 1, "ma": 0.7, "asr": 0.25})
    table = CliRunner().invoke(app, ["summary", str(run_dir.path)]).stdout.splitlines()
    assert table[2].startswith(f"| {run_dir.path.name} | 2 | 81.23% |") and "| 50.00% |" in table[2]
    at_one = CliRunner().invoke(app, ["summary", str(run_dir.path), "--at-round", "1"]).stdout
    assert "| 1 | 70.00% |" in at_one and "25.00%" in at_one
    assert CliRunner().invoke(app, ["summary", str(tmp_path)]).exit_code == 2
