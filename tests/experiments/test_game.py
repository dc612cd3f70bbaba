"""Zero-sum game: known equilibria of hand-made matrices, payoffs from sweep rows, the command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.experiments.game import attacker_utility, payoff_matrix, solve_zero_sum


def test_matching_pennies_is_half_half_with_value_zero() -> None:
    eq = solve_zero_sum(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert eq.row == pytest.approx([0.5, 0.5], abs=1e-7) and eq.column == pytest.approx([0.5, 0.5], abs=1e-7)
    assert eq.value == pytest.approx(0.0, abs=1e-7)


def test_rock_paper_scissors_is_uniform() -> None:
    eq = solve_zero_sum(np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]))
    assert eq.row == pytest.approx([1 / 3] * 3, abs=1e-7) and eq.column == pytest.approx([1 / 3] * 3, abs=1e-7)
    assert eq.value == pytest.approx(0.0, abs=1e-7)


def test_dominated_strategy_gets_no_weight() -> None:
    # Row 2 is worse than row 0 against every column; rows 0 and 1 form a symmetric 2x2 game whose
    # solution is (1/2, 1/2) for both players, value (4 + 1) / 2.
    payoff = np.array([[4.0, 1.0], [1.0, 4.0], [3.0, 0.5]])
    eq = solve_zero_sum(payoff)
    assert eq.row[2] == pytest.approx(0.0, abs=1e-7)
    assert eq.row == pytest.approx([0.5, 0.5, 0.0], abs=1e-7)
    assert eq.column == pytest.approx([0.5, 0.5], abs=1e-7) and eq.value == pytest.approx(2.5)


def test_saddle_point_gives_pure_strategies() -> None:
    payoff = np.array([[3.0, 5.0, 4.0], [1.0, 0.0, 2.0], [2.0, 6.0, 1.0]])  # (0, 0): row minimum, column maximum
    eq = solve_zero_sum(payoff)
    assert eq.row == pytest.approx([1, 0, 0], abs=1e-7) and eq.column == pytest.approx([1, 0, 0], abs=1e-7)
    assert eq.value == pytest.approx(3.0)


def test_equilibrium_guarantees_the_value_against_any_reply() -> None:
    payoff = np.random.default_rng(0).uniform(size=(5, 7))
    eq = solve_zero_sum(payoff)
    assert (eq.row @ payoff >= eq.value - 1e-7).all()  # no defender reply does better than the value
    assert (payoff @ eq.column <= eq.value + 1e-7).all()  # no attacker reply does better either
    assert eq.row.sum() == pytest.approx(1) and eq.column.sum() == pytest.approx(1)


def test_attack_pays_only_above_the_accuracy_floor() -> None:
    assert attacker_utility(asr=0.9, ma=0.85, ma_min=0.8) == 0.9
    assert attacker_utility(asr=0.9, ma=0.75, ma_min=0.8) == 0.0
    assert attacker_utility(asr=None, ma=0.9, ma_min=0.8) == 0.0


def test_payoff_averages_utilities_over_seeds() -> None:
    rows = [
        {"atk": "a", "def": "x", "seed": 0, "status": "finished", "asr": 1.0, "ma": 0.9},
        {"atk": "a", "def": "x", "seed": 1, "status": "finished", "asr": 0.8, "ma": 0.5},  # below the floor: 0
        {"atk": "a", "def": "y", "seed": 0, "status": "finished", "asr": 0.2, "ma": 0.9},
        {"atk": "a", "def": "y", "seed": 1, "status": "missing", "asr": None, "ma": None},
    ]
    matrix = payoff_matrix(rows, ["atk"], ["def"], ma_min=0.8)
    assert matrix.attacker_labels == ["a"] and matrix.defender_labels == ["x", "y"]
    assert matrix.payoff.tolist() == [[0.5, 0.2]] and matrix.runs.tolist() == [[2, 1]]
    with pytest.raises(ValueError, match="no finished run"):
        payoff_matrix(rows + [{"atk": "b", "def": "x", "seed": 0, "status": "finished", "asr": 1, "ma": 1}],
                      ["atk"], ["def"], ma_min=0.8)


def write_sweep(path: Path, rows: list[dict]) -> None:
    path.mkdir()
    grid = {key: {str(r[key]): str(r[key]) for r in rows} for key in ("attack", "defenses")}
    (path / "sweep.yaml").write_text(yaml.safe_dump({"name": "g", "base": "b.yaml", "grid": grid, "seeds": [0]}))
    with open(path / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_game_command_solves_a_sweep_and_saves_the_game(tmp_path: Path) -> None:
    # Matching pennies hidden in a sweep: each attack succeeds against one defense only.
    rows = [{"attack": a, "defenses": d, "seed": 0, "status": "finished", "ma": 0.9,
             "asr": 1.0 if (a, d) in {("badnets", "median"), ("blended", "krum")} else 0.0, "run": "x"}
            for a in ("badnets", "blended") for d in ("krum", "median")]
    write_sweep(tmp_path / "s", rows)
    result = CliRunner().invoke(app, ["game", str(tmp_path / "s"), "--attacker", "attack", "--defender", "defenses",
                                      "--ma-min", "0.8"])
    assert result.exit_code == 0, result.output
    game = json.loads((tmp_path / "s" / "game.json").read_text())
    assert game["attacker_labels"] == ["badnets", "blended"] and game["defender_labels"] == ["krum", "median"]
    assert game["payoff"] == [[0.0, 1.0], [1.0, 0.0]]
    assert game["attacker_strategy"] == pytest.approx([0.5, 0.5]) and game["value"] == pytest.approx(0.5)
    assert "game value (attacker's expected utility): 0.5000" in result.output

    floor = CliRunner().invoke(app, ["game", str(tmp_path / "s"), "--attacker", "attack", "--defender", "defenses",
                                     "--ma-min", "0.95"])
    assert floor.exit_code == 0 and json.loads((tmp_path / "s" / "game.json").read_text())["value"] == 0.0


def test_game_command_rejects_unknown_keys(tmp_path: Path) -> None:
    rows = [{"attack": "a", "defenses": "d", "seed": 0, "status": "finished", "ma": 0.9, "asr": 0.5, "run": "x"}]
    write_sweep(tmp_path / "s", rows)
    result = CliRunner().invoke(app, ["game", str(tmp_path / "s"), "--attacker", "attak", "--defender", "defenses"])
    assert result.exit_code == 2 and "not among the grid keys" in result.output


def pennies(path: Path) -> Path:
    rows = [{"attack": a, "defenses": d, "seed": 0, "status": "finished", "ma": 0.9,
             "asr": 1.0 if (a, d) in {("badnets", "median"), ("blended", "krum")} else 0.0, "run": "x"}
            for a in ("badnets", "blended") for d in ("krum", "median")]
    write_sweep(path, rows)
    return path


@pytest.mark.parametrize(("value", "message"), [
    ("30", "--ma-min 30: expected an accuracy between 0 and 1 (write 0.3 for 30%)\n"),
    ("1.5", "--ma-min 1.5: expected an accuracy between 0 and 1 (write 0.015 for 1.5%)\n"),
    ("-0.1", "--ma-min -0.1: expected an accuracy between 0 and 1\n"),
    ("nan", "--ma-min nan: expected an accuracy between 0 and 1\n"),
])
def test_game_refuses_an_accuracy_floor_outside_0_1(tmp_path: Path, value: str, message: str) -> None:
    sweep = pennies(tmp_path / "s")
    result = CliRunner().invoke(app, ["game", str(sweep), "--attacker", "attack", "--defender", "defenses",
                                      "--ma-min", value])
    assert result.exit_code == 2 and result.stderr == message
    assert not (sweep / "game.json").exists()


def test_game_names_the_grid_keys_when_a_player_has_none(tmp_path: Path) -> None:
    sweep = pennies(tmp_path / "s")
    empty = CliRunner().invoke(app, ["game", str(sweep), "--attacker", " ", "--defender", "defenses"])
    assert empty.exit_code == 2
    assert empty.stderr == "--attacker: give one or more grid keys, comma-separated (the grid keys: attack, defenses)\n"
    unknown = CliRunner().invoke(app, ["game", str(sweep), "--attacker", "attack", "--defender", "defense,seed"])
    assert unknown.stderr == "--defender defense,seed: defense, seed not among the grid keys (attack, defenses)\n"


def test_game_warns_when_no_attack_pays(tmp_path: Path) -> None:
    sweep = pennies(tmp_path / "s")
    paying = CliRunner().invoke(app, ["game", str(sweep), "--attacker", "attack", "--defender", "defenses"])
    assert paying.exit_code == 0 and paying.stderr == ""
    floor = CliRunner().invoke(app, ["game", str(sweep), "--attacker", "attack", "--defender", "defenses",
                                     "--ma-min", "0.95"])
    assert floor.exit_code == 0 and json.loads((sweep / "game.json").read_text())["payoff"] == [[0, 0], [0, 0]]
    assert floor.stderr.startswith("warning: every payoff is 0 (no cell has an ASR above 0 with MA above 0.95)")
