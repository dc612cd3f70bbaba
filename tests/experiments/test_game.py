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
from fedsec.experiments.game import Costs, attacker_utility, game_file, payoff_matrix, solve_zero_sum

GAME = "game-attack-vs-defenses.json"


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
    game = json.loads((tmp_path / "s" / GAME).read_text())
    assert game["attacker_labels"] == ["badnets", "blended"] and game["defender_labels"] == ["krum", "median"]
    assert game["payoff"] == [[0.0, 1.0], [1.0, 0.0]]
    assert game["attacker_strategy"] == pytest.approx([0.5, 0.5]) and game["value"] == pytest.approx(0.5)
    assert "game value (attacker's expected utility): 0.5000 (50.0 %)" in result.output

    floor = CliRunner().invoke(app, ["game", str(tmp_path / "s"), "--attacker", "attack", "--defender", "defenses",
                                     "--ma-min", "0.95"])
    assert floor.exit_code == 0 and json.loads((tmp_path / "s" / GAME).read_text())["value"] == 0.0


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
    assert not (sweep / GAME).exists()


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
    assert floor.exit_code == 0 and json.loads((sweep / GAME).read_text())["payoff"] == [[0, 0], [0, 0]]
    assert floor.stderr.startswith("warning: every payoff is 0 (no cell has an ASR above 0 with MA above 0.95)")


WRECK = [  # the "wreck" defense rejects every attacker but halves the main accuracy
    {"attack": "weak", "defenses": "fedavg", "asr": 0.5, "ma": 0.9, "attack_budget": 0.1, "recall": None,
     "aggregate_s": 1.0},
    {"attack": "weak", "defenses": "wreck", "asr": 0.0, "ma": 0.5, "attack_budget": 0.1, "recall": 1.0,
     "aggregate_s": 3.0},
    {"attack": "strong", "defenses": "fedavg", "asr": 0.9, "ma": 0.88, "attack_budget": 0.4, "recall": None,
     "aggregate_s": 1.0},
    {"attack": "strong", "defenses": "wreck", "asr": 0.0, "ma": 0.5, "attack_budget": 0.4, "recall": 1.0,
     "aggregate_s": 3.0},
]
COSTS = Costs(poisoning=0.5, detection=0.2, lost_ma=2.0, compute=0.01)


def finished(rows: list[dict]) -> list[dict]:
    return [{**r, "seed": 0, "status": "finished", "run": f"cells/{r['attack']}-{r['defenses']}"} for r in rows]


def test_a_defense_that_wrecks_the_model_wins_only_the_plain_game() -> None:
    plain = payoff_matrix(finished(WRECK), ["attack"], ["defenses"], ma_min=0.4)
    assert plain.payoff.tolist() == [[0.5, 0.0], [0.9, 0.0]]
    assert solve_zero_sum(plain.payoff).column == pytest.approx([0, 1], abs=1e-7)  # always wreck

    # By hand, best MA 0.9: weak/fedavg 0.5 - 0.5*0.1 + 0.01*1 = 0.46; weak/wreck 0 - 0.05 - 0.2*1 + 2*0.4 + 0.03
    # = 0.58; strong/fedavg 0.9 - 0.2 + 2*0.02 + 0.01 = 0.75; strong/wreck 0 - 0.2 - 0.2 + 0.8 + 0.03 = 0.43.
    aware = payoff_matrix(finished(WRECK), ["attack"], ["defenses"], ma_min=0.4, costs=COSTS)
    assert aware.attacker_labels == ["weak", "strong"] and aware.best_ma == 0.9
    assert aware.payoff == pytest.approx(np.array([[0.46, 0.58], [0.75, 0.43]]))
    assert aware.terms["lost_ma"] == pytest.approx(np.array([[0, 0.8], [0.04, 0.8]]))
    assert aware.terms["detection"].tolist() == [[0, -0.2], [0, -0.2]]  # fedavg never rejects: nothing detected
    # 2x2 without a saddle point: the attacker mixes p on weak with 0.46p + 0.75(1-p) = 0.58p + 0.43(1-p),
    # p = 0.32/0.44; the defender q on fedavg with 0.46q + 0.58(1-q) = 0.75q + 0.43(1-q), q = 0.15/0.44.
    eq = solve_zero_sum(aware.payoff)
    assert eq.row == pytest.approx([0.32 / 0.44, 0.12 / 0.44])
    assert eq.column == pytest.approx([0.15 / 0.44, 0.29 / 0.44])
    assert eq.value == pytest.approx(0.75 - 0.29 * 0.32 / 0.44)


def test_a_cost_needs_what_it_counts() -> None:
    rows = finished([{**WRECK[0], "aggregate_s": None}])
    assert payoff_matrix(rows, ["attack"], ["defenses"], 0.4).payoff.tolist() == [[0.5]]
    with pytest.raises(ValueError, match="no aggregate_s recorded"):
        payoff_matrix(rows, ["attack"], ["defenses"], 0.4, Costs(compute=1.0))


def test_cost_aware_game_command_keeps_one_file_per_analysis(tmp_path: Path) -> None:
    write_sweep(tmp_path / "s", finished(WRECK))
    args = ["game", str(tmp_path / "s"), "--attacker", "attack", "--defender", "defenses", "--ma-min", "0.4"]
    costs = ["--poisoning-cost", "0.5", "--detection-cost", "0.2", "--ma-cost", "2", "--compute-cost", "0.01"]
    result = CliRunner().invoke(app, [*args, *costs])
    assert result.exit_code == 0, result.output
    game = json.loads((tmp_path / "s" / GAME).read_text())
    assert game["costs"] == {"poisoning": 0.5, "detection": 0.2, "lost_ma": 2.0, "compute": 0.01}
    assert np.array(game["payoff"]) == pytest.approx(np.array([[0.46, 0.58], [0.75, 0.43]]))
    assert game["defender_strategy"] == pytest.approx([0.15 / 0.44, 0.29 / 0.44])
    assert "payoff (%): attacker utility ASR x 1[MA > 0.4] - 0.5 x budget" in result.output
    assert "weak   | 46.0 | 58.0" in result.output
    fixed = CliRunner().invoke(app, [*args, "--where", "attack=weak"])
    assert fixed.exit_code == 0, fixed.output
    assert {f.name for f in (tmp_path / "s").glob("game-*.json")} == {GAME, game_file(
        ["attack"], ["defenses"], ["attack=weak"])}
    negative = CliRunner().invoke(app, [*args, "--ma-cost", "-1"])
    assert negative.exit_code == 2 and negative.stderr == "--ma-cost -1: expected a cost of 0 or more (utility units)\n"


def test_game_explains_the_axes_it_needs(tmp_path: Path) -> None:
    sweep = pennies(tmp_path / "s")
    result = CliRunner().invoke(app, ["game", str(sweep), "--defender", "defenses"])
    assert result.exit_code == 2 and result.stderr.startswith("fedsec game needs two sets of grid keys: --attacker")
    assert result.stderr.endswith("(this sweep's grid keys: attack, defenses)\n")


def test_game_warns_on_a_tie(tmp_path: Path) -> None:
    rows = [{"attack": a, "defenses": d, "seed": 0, "status": "finished", "ma": 0.9, "asr": 0.3, "run": "x"}
            for a in ("badnets", "blended") for d in ("krum", "median")]
    write_sweep(tmp_path / "s", rows)
    result = CliRunner().invoke(app, ["game", str(tmp_path / "s"), "--attacker", "attack", "--defender", "defenses"])
    assert result.exit_code == 0 and result.stderr.startswith("warning: every payoff is 30.0 %, a tie")
