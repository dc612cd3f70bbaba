"""Scenario schema: defaults, overrides, and one clear line per malformed file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.scenario import Scenario, ScenarioError, apply_overrides, load_scenario, parse_scenario, to_yaml

BAD = sorted((Path(__file__).parent / "scenarios_bad").glob("*.yaml"))
# Sweep files (*.sweep.yaml) describe grids over a scenario; tests/experiments checks them.
SCENARIOS = sorted(p for p in (Path(__file__).parents[1] / "scenarios").rglob("*.yaml")
                   if not p.name.endswith(".sweep.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_malformed_scenario_gives_one_line_and_exit_2(path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:")
    assert expected_message(path) in lines[0]
    assert "Traceback" not in result.output


def test_run_with_malformed_scenario_exits_2_without_traceback() -> None:
    result = CliRunner().invoke(app, ["run", str(BAD[0])])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


DEEP_CHAIN = {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [50, 33, 33, 33, 50], "global_scale_bits": 33}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"watermark": {"scheme": {"name": "fedcrypt", "layer": "nope"}}},
     "watermark.scheme.layer: 'nope' is not a parameter of the model (known: 1.1.weight,"),
    ({"watermark": {"scheme": {"name": "uchida", "layer": "nope"}}},
     "watermark.scheme.layer: 'nope' is not a weight of the model (known: 1.1.weight,"),
    ({"data": {"dataset": "fashion-mnist", "num_clients": 4}, "model": {"name": "cnn"},
      "watermark": {"scheme": {"name": "fedcrypt", "layer": "1.7.weight"}}, "encryption": {"mode": "ckks", **DEEP_CHAIN}},
     "watermark.scheme.layer: 1.7.weight has 200704 values, more than one ciphertext holds (4096)"),
], ids=["fedcrypt-layer", "uchida-layer", "fedcrypt-too-large-for-ckks"])
def test_run_checks_the_scenario_against_its_model_before_starting(tmp_path: Path, changes: dict, expected: str) -> None:
    scenario = {"name": "preflight", "rounds": 1, "data": {"dataset": "digits", "num_clients": 4},
                "model": {"name": "mlp"}, "output": {"dir": str(tmp_path / "runs")}, **changes}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith(f"{path}: {expected}") and "\n" not in result.stderr.strip()
    assert not (tmp_path / "runs").exists()  # nothing started, no run directory


def test_missing_file() -> None:
    result = CliRunner().invoke(app, ["validate", "no/such/scenario.yaml"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "no/such/scenario.yaml: no such file"


def test_several_files_report_every_error() -> None:
    result = CliRunner().invoke(app, ["validate", str(BAD[0]), str(BAD[1]), str(SCENARIOS[0])])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 2
    assert f"{SCENARIOS[0]}: ok" in result.stdout


def test_several_errors_in_one_file_give_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("name: x\nrounds: 0\nclient: {lr: -1, epochs: 3}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert sorted(line.split(":")[0] for line in info.value.lines) == ["client.epochs", "client.lr", "rounds"]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_shipped_scenarios_are_valid(path: Path) -> None:
    load_scenario(path)


def test_defaults_fill_every_section() -> None:
    scenario = parse_scenario({"name": "x"})
    assert scenario.data.dataset == "fashion-mnist"
    assert scenario.data.partitioner.name == "dirichlet"
    assert scenario.clients_per_round == scenario.data.num_clients


def test_overrides_set_nested_values_parsed_as_yaml() -> None:
    raw = apply_overrides({"name": "x"}, ["data.partitioner.alpha=0.1", "rounds=3", "output.plots=false"])
    scenario = parse_scenario(raw)
    assert scenario.data.partitioner.alpha == 0.1
    assert scenario.rounds == 3
    assert scenario.output.plots is False


def test_override_to_unknown_key_is_an_error() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(apply_overrides({"name": "x"}, ["data.alfa=0.1"]))
    assert info.value.lines == ["data.alfa: unknown key"]


def test_override_without_equals_sign() -> None:
    with pytest.raises(ScenarioError):
        apply_overrides({"name": "x"}, ["rounds"])


def test_fraction_resolves_clients_per_round() -> None:
    scenario = parse_scenario({"name": "x", "data": {"num_clients": 50}, "sampling": {"fraction": 0.1}})
    assert scenario.clients_per_round == 5


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_resolved_scenarios_round_trip(path: Path) -> None:
    """What the server sends to clients (JSON) and writes to the run directory (YAML) reloads
    to the same scenario."""
    scenario = load_scenario(path)
    assert Scenario.model_validate_json(scenario.model_dump_json()) == scenario
    assert parse_scenario(yaml.safe_load(to_yaml(scenario))) == scenario
