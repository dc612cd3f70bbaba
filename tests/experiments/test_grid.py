"""Sweep definitions: grid options, sweep files, cells, nested overrides, validation before running."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.experiments.grid import (
    SweepSpec,
    cell_mapping,
    cells,
    load_sweep_file,
    make_axis,
    parse_grid_option,
    set_path,
    value_label,
)
from fedsec.experiments.sweep import plan
from fedsec.scenario import ScenarioError

BASE = {
    "name": "base",
    "rounds": 1,
    "data": {"dataset": "digits", "num_clients": 6, "partitioner": {"name": "iid"}},
    "model": {"name": "mlp"},
    "defenses": [{"name": "krum", "f": 1}],
}


@pytest.fixture
def base_file(tmp_path: Path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


def test_grid_option_reads_yaml_values_grouped_by_brackets() -> None:
    axis = parse_grid_option("defenses=[{name: krum, f: 1}],[{name: norm-clipping}, {name: flame}],[]")
    assert axis.key == "defenses"
    assert axis.values == ([{"name": "krum", "f": 1}], [{"name": "norm-clipping"}, {"name": "flame"}], [])
    assert axis.labels == ("krum(f=1)", "norm-clipping+flame", "none")
    numbers = parse_grid_option("data.partitioner.alpha=0.1, 1, 1e-3")
    assert numbers.values == (0.1, 1, 0.001) and numbers.labels == ("0.1", "1", "0.001")  # 1e-3 is a number, as in scenarios
    assert parse_grid_option("attack=null,{fraction: 0.1}").labels == ("null", "fraction=0.1")


@pytest.mark.parametrize("text", ["defenses", "=1,2", "rounds=", "rounds=[1,"])
def test_bad_grid_option_is_one_line(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_grid_option(text)
    assert len(info.value.lines) == 1 and info.value.lines[0].startswith(f"--grid {text}")


def test_equal_short_labels_fall_back_to_full_values() -> None:
    axis = make_axis("defenses", [[{"name": "krum", "f": 1}], [{"name": "krum", "f": 1.0}]])
    assert len(set(axis.labels)) == 2
    assert value_label({"name": "dirichlet", "alpha": 0.5}) == "dirichlet(alpha=0.5)"


def test_set_path_reaches_list_items_and_creates_sections() -> None:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    set_path(raw, "defenses.0.f", 2)
    set_path(raw, "attack.data.name", "badnets")
    assert raw["defenses"] == [{"name": "krum", "f": 2}] and raw["attack"] == {"data": {"name": "badnets"}}
    with pytest.raises(ValueError, match="defenses has 1 items, no item '3'"):
        set_path(raw, "defenses.3.f", 1)
    with pytest.raises(ValueError, match="model.layers is not a list"):
        set_path(raw, "model.layers.0", 1)


def test_cells_cover_every_combination_and_seed(base_file: Path) -> None:
    spec = SweepSpec(base_file, "s", (("rounds", 3),),
                     (parse_grid_option("rounds=1,2"), parse_grid_option("model.name=mlp,cnn,lenet5")), (5, 6))
    all_cells = cells(spec)
    assert len(all_cells) == 2 * 3 * 2
    assert {(c.labels, c.seed) for c in all_cells} == {
        ((r, m), s) for r in ("1", "2") for m in ("mlp", "cnn", "lenet5") for s in (5, 6)}
    raw = cell_mapping(BASE, spec, all_cells[-1])
    assert (raw["rounds"], raw["model"]["name"], raw["seed"]) == (2, "lenet5", 6)  # grid beats the fixed override
    assert BASE["model"]["name"] == "mlp"  # the base mapping is not modified


def test_sweep_file_with_labels_fixed_overrides_and_seed_count(tmp_path: Path, base_file: Path) -> None:
    path = tmp_path / "study.sweep.yaml"
    path.write_text(yaml.safe_dump({
        "base": base_file.name, "set": {"rounds": 2},
        "grid": {"defenses": {"robust": [{"name": "median"}], "plain": []}}, "seeds": 3,
    }, sort_keys=False))
    spec = load_sweep_file(path)
    assert spec.base == base_file and spec.name == "study.sweep" and spec.seeds == (0, 1, 2)
    assert spec.axes[0].labels == ("robust", "plain") and spec.overrides == (("rounds", 2),)
    planned = plan(spec, tmp_path / "out")
    assert len(planned) == 6 and len({p.path for p in planned}) == 6
    assert all(p.scenario.rounds == 2 and p.path.parent == tmp_path / "out" / "cells" for p in planned)
    again = plan(load_sweep_file(path), tmp_path / "out")
    assert [p.path for p in again] == [p.path for p in planned]  # names are deterministic


def test_sweep_file_problems_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": "x.yaml", "grid": {"rounds": []}, "seed": [1]}))
    with pytest.raises(ScenarioError) as info:
        load_sweep_file(path)
    text = "\n".join(info.value.lines)
    assert "seed: unknown key" in text and "grid" in text


def test_invalid_cells_stop_the_sweep_before_anything_runs(tmp_path: Path, base_file: Path) -> None:
    result = CliRunner().invoke(app, [
        "sweep", str(base_file), "--grid", "data.nope=1,2", "--grid", "rounds=1,2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "data.nope: unknown key; data takes: dataset," in lines[0]
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_cells(tmp_path: Path, base_file: Path) -> None:
    result = CliRunner().invoke(app, [
        "sweep", str(base_file), "--grid", "rounds=1,2", "--seeds", "0,1", "--dry-run", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "4 cells, 0 finished, 4 to run" in result.output
    assert sum("to run" in line for line in result.output.splitlines()[1:]) == 4
