"""``fedsec sweep --only``: a chosen subset of a sweep's cells, by grid label and seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.experiments.grid import SweepSpec, make_axis
from fedsec.experiments.sweep import plan, select
from fedsec.scenario import ScenarioError

BASE = {"name": "b", "rounds": 1, "data": {"dataset": "digits", "num_clients": 3}, "model": {"name": "mlp"}}
GRID = {"client.lr": {"slow": 0.1, "fast": 0.2}, "client.local_epochs": {"one": 1, "two": 2}}


@pytest.fixture
def spec(tmp_path: Path) -> SweepSpec:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    return SweepSpec(base, "t", (), tuple(make_axis(key, values) for key, values in GRID.items()), (0, 1, 2))


def chosen(spec: SweepSpec, tmp_path: Path, *only: str) -> list[tuple[str, str, int | None]]:
    picked = select(plan(spec, tmp_path / "out"), spec, only)
    return [(*p.cell.labels, p.cell.seed) for p in picked]


def test_no_condition_keeps_every_cell(spec: SweepSpec, tmp_path: Path) -> None:
    assert len(chosen(spec, tmp_path)) == 12


def test_conditions_on_labels_and_seed_all_hold(spec: SweepSpec, tmp_path: Path) -> None:
    assert chosen(spec, tmp_path, "client.lr=fast") == [
        ("fast", epochs, seed) for epochs in ("one", "two") for seed in (0, 1, 2)]
    assert chosen(spec, tmp_path, "client.lr=fast", "client.local_epochs = two, one", "seed=1,2") == [
        ("fast", "one", 1), ("fast", "one", 2), ("fast", "two", 1), ("fast", "two", 2)]


@pytest.mark.parametrize(("only", "message"), [
    ("attack=dba", "with key one of client.lr, client.local_epochs, seed"),
    ("client.lr=medium", "unknown client.lr medium (known: fast, slow)"),
    ("seed=7", "unknown seed 7"),
    ("client.lr=", "unknown client.lr (none)"),
])
def test_unknown_key_or_label_is_refused(spec: SweepSpec, tmp_path: Path, only: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        select(plan(spec, tmp_path / "out"), spec, [only])
    assert message in caught.value.lines[0]


def test_cli_dry_run_lists_the_chosen_cells(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    sweep = {"name": "t", "base": "base.yaml", "grid": GRID, "seeds": 2}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    args = ["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--only", "client.lr=slow", "--only", "seed=1"])
    assert result.exit_code == 0, result.output
    assert "8 cells, 0 finished, 6 not chosen by --only, 2 to run" in result.output
    assert sorted(line.split()[-1].rsplit("-", 1)[0] for line in result.output.splitlines()
                  if line.strip().startswith("to run")) == ["slow_one_s1", "slow_two_s1"]
    refused = CliRunner().invoke(app, [*args, "--only", "client.lr=medium"])
    assert refused.exit_code == 2 and "unknown client.lr medium" in refused.output
