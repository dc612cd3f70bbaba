"""Scenario schema: defaults, overrides, and one clear line per malformed file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from fedsec.attacks import MODEL_ATTACKS, ModelAttackContext, build_model_attack
from fedsec.cli import app
from fedsec.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_scenario,
    scenario_warnings,
    to_yaml,
)

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
    ({"watermark": {"scheme": {"name": "uchida"}, "fingerprints": {"layer": "1.1.weight"}}},
     "watermark.fingerprints.layer: 1.1.weight carries the owner's watermark; choose another weight"),
    ({"watermark": {"scheme": {"name": "keyed-labels"}, "fingerprints": {"bits": 16}}},
     "watermark.fingerprints.bits: 16 bits cannot single out one of 4 clients"),
    ({"watermark": {"scheme": {"name": "keyed-labels"}, "fingerprints": {}}, "encryption": {"mode": "ckks"}},
     "watermark.fingerprints: the server fingerprints a plaintext global model; under encryption.mode ckks"),
], ids=["fedcrypt-layer", "uchida-layer", "fedcrypt-too-large-for-ckks", "fingerprint-on-the-watermark",
        "fingerprint-too-short", "fingerprint-under-encryption"])
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
    assert info.value.lines == [
        "data.alfa: unknown key; data takes: dataset, num_clients, partitioner, root, test_samples"]


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


def problem(**sections: object) -> str:
    """The single problem line of a small scenario with ``sections`` added."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"name": "x", "rounds": 2, "data": {"num_clients": 4}, **sections})
    assert len(info.value.lines) == 1, info.value.lines
    return info.value.lines[0]


def test_unknown_key_lists_the_keys_of_its_method_and_suggests_the_closest() -> None:
    assert problem(defenses=[{"name": "fedavg"}, {"name": "flame", "max_norm": 1}]) == (
        "defenses.1.max_norm: unknown key; flame takes: distance, membership, noise_lambda")
    assert problem(round=3).startswith(
        "round: unknown key (did you mean rounds?); the top level takes: attack, client, data, data_supply, defenses,")
    assert problem(data={"num_clients": 4, "partitioner": {"name": "dirichlet", "alfa": 1}}) == (
        "data.partitioner.alfa: unknown key (did you mean alpha?); dirichlet takes: alpha, min_partition_size, "
        "self_balancing")
    assert problem(attack={"fraction": 0.25, "schedule": {"strat": 1}}) == (
        "attack.schedule.strat: unknown key; attack.schedule takes: end_round, every, single_shot, start_round")


@pytest.mark.parametrize(("sections", "where", "name"), [
    ({"defenses": ["flame"]}, "defenses.0", "flame"),
    ({"data": {"num_clients": 4, "partitioner": "iid"}}, "data.partitioner", "iid"),
    ({"attack": {"fraction": 0.25, "model": "alie"}}, "attack.model", "alie"),
    ({"attack": {"fraction": 0.25, "data": "badnets"}}, "attack.data", "badnets"),
    ({"inspection": {"methods": ["neural-cleanse"]}}, "inspection.methods.0", "neural-cleanse"),
    ({"runtime_guards": {"chains": {"main": ["strip"]}}}, "runtime_guards.chains.main.0", "strip"),
    ({"privacy": {"inversion": {"attacks": ["dlg"]}}}, "privacy.inversion.attacks.0", "dlg"),
    ({"extraction": {"attacks": ["knockoff"]}}, "extraction.attacks.0", "knockoff"),
    ({"watermark": {"scheme": "uchida"}}, "watermark.scheme", "uchida"),
], ids=lambda v: v if isinstance(v, str) and "." in v else None)
def test_a_method_name_where_a_mapping_belongs_shows_how_to_write_it(sections: dict, where: str, name: str) -> None:
    assert problem(**sections) == f"{where}: expected a mapping of keys, got {name!r} (write {{name: {name}}})"


def test_no_mapping_hint_for_a_name_the_list_does_not_hold() -> None:
    assert problem(defenses=["alie"]) == "defenses.0: expected a mapping of keys, got 'alie'"
    assert problem(data="digits") == "data: expected a mapping of keys, got 'digits'"


BENIGN_UPDATE_ATTACKS = [{"name": "alie"}, {"name": "ipm"}, {"name": "minmax"}, {"name": "minsum"},
                         {"name": "constrain-scale"}]


@pytest.mark.parametrize("spec", BENIGN_UPDATE_ATTACKS, ids=lambda s: s["name"])
def test_attacks_declaring_benign_updates_depend_on_them(spec: dict) -> None:
    """Their update with other clients' benign updates differs from the one with the own update alone
    (what ``collusion: none`` gives them)."""
    attack = build_model_attack(spec)
    assert attack.uses_benign_updates()
    generator = torch.Generator().manual_seed(0)
    own, others = torch.randn(50, generator=generator), torch.randn(4, 50, generator=generator) * 3

    def context(benign: torch.Tensor | None) -> ModelAttackContext:
        return ModelAttackContext(global_vector=torch.zeros(50), benign_updates=benign, num_clients=10,
                                  num_malicious=2, num_clients_per_round=5, round_examples=500, own_examples=100,
                                  generator=torch.Generator().manual_seed(1))

    assert not torch.allclose(attack(own, context(None)), attack(own, context(torch.vstack([own, others]))))


def test_other_attacks_do_not_declare_benign_updates() -> None:
    declaring = {spec["name"] for spec in BENIGN_UPDATE_ATTACKS}
    for name in MODEL_ATTACKS.names():
        assert build_model_attack({"name": name}).uses_benign_updates() == (name in declaring), name
    assert not build_model_attack({"name": "constrain-scale", "radius": 1.0}).uses_benign_updates()


def attack_scenario(collusion: str, **model: object) -> Scenario:
    return parse_scenario({"name": "x", "data": {"num_clients": 10},
                           "attack": {"fraction": 0.2, "model": model, "collusion": collusion}})


def test_benign_update_attacks_without_collusion_are_warned_about() -> None:
    assert scenario_warnings(attack_scenario("none", name="alie")) == [
        "warning: attack.model: alie is computed from the benign updates the attacker knows, and with "
        "attack.collusion: none that is only its own update, so the attack degenerates "
        "(set attack.collusion: full-knowledge)"]
    assert scenario_warnings(attack_scenario("full-knowledge", name="alie")) == []
    assert scenario_warnings(attack_scenario("none", name="scaling")) == []
    assert scenario_warnings(attack_scenario("none", name="constrain-scale", radius=2.0)) == []
    assert scenario_warnings(parse_scenario({"name": "x"})) == []


def test_validate_prints_the_warning_on_stderr_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ipm.yaml"
    path.write_text(yaml.safe_dump({"name": "ipm", "data": {"num_clients": 10},
                                    "attack": {"fraction": 0.2, "model": {"name": "ipm"}}}))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and result.stdout == f"{path}: ok\n"
    assert result.stderr.splitlines() == [f"{path}: warning: attack.model: ipm is computed from the benign updates "
                                          "the attacker knows, and with attack.collusion: none that is only its own "
                                          "update, so the attack degenerates (set attack.collusion: full-knowledge)"]
