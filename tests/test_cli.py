"""Command-line commands other than run/validate (those are in test_scenario/test_simulation)."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def finished_run(parent: Path, seed: int, summary: dict[str, object]) -> RunDirectory:
    run_dir = RunDirectory.create(parent, f"demo-{seed}")
    run_dir.file("scenario.yaml").write_text(f"name: demo\nseed: {seed}\nrounds: 2\noutput: {{dir: {parent}}}\n")
    run_dir.write_json("summary.json", summary)
    return run_dir


def test_summary_table_reads_run_directories(tmp_path: Path) -> None:
    run_dir = finished_run(tmp_path, 0, {"rounds": 2, "ma": 0.81234, "best_ma": 0.9, "asr": 0.5, "max_asr": 0.6,
                                         "recall": None, "wall_s": 12.25})
    run_dir.append_round({"round": 1, "ma": 0.7, "asr": 0.25})
    run_dir.append_round({"round": 2, "ma": 0.81234, "asr": 0.5})
    table = CliRunner().invoke(app, ["summary", str(run_dir.path)]).stdout.splitlines()
    assert table[0] == "Every run: attack none; defense fedavg; data –"
    assert table[2].startswith("| run | rounds | MA (%) | best MA (%) | ASR (%) | peak ASR (%) | clean-model ASR (%) |")
    assert table[4].startswith(f"| {run_dir.path.name} | 2 | 81.23 | 90.00 | 50.00 | 60.00 | – | – | n/a |")
    assert len(table) == 5  # one run: no table over seeds
    at_one = CliRunner().invoke(app, ["summary", str(run_dir.path), "--at-round", "1"]).stdout
    assert "| 1 | 70.00 | 70.00 | 25.00 | 25.00 | – | – | n/a | n/a | – | 0 | 0.0 |" in at_one  # up to round 1 only
    assert CliRunner().invoke(app, ["summary", str(tmp_path)]).exit_code == 2


def test_summary_gathers_seeds_of_one_scenario_with_intervals(tmp_path: Path) -> None:
    runs = [finished_run(tmp_path, seed, {"rounds": 2, "ma": ma}) for seed, ma in enumerate((0.1, 0.2, 0.3))]
    table = CliRunner().invoke(app, ["summary", *(str(r.path) for r in runs)]).stdout
    # mean 20.0, half-width t(0.975, 2) * 10 / sqrt(3) = 24.8
    assert "| demo | 3 | 20.0 ± 24.8 |" in table


def test_list_shows_every_registered_method_by_family() -> None:
    from fedsec.catalogue import families

    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["methods"]).stdout == result.stdout  # the old name is an alias
    lines = result.stdout.splitlines()
    for family in families():
        heading = lines.index(f"{family.title}, in {family.where}:")
        listed = [line.split()[0] for line in lines[heading + 1:heading + 1 + len(family.registry.names())]]
        assert listed == family.registry.names()
    flame = next(line for line in lines if line.split()[:1] == ["flame"])
    assert "Nguyen et al., USENIX Security 2022" in flame
    assert flame.endswith("Keep the largest HDBSCAN cluster of cosine distances, clip to the median norm, add noise.")


def test_describe_prints_the_parameters_of_every_method_so_named() -> None:
    from fedsec.defenses import DEFENSES

    lines = CliRunner().invoke(app, ["describe", "flame"]).stdout.splitlines()
    assert lines[:2] == ["flame: defense, in defenses", "  paper: Nguyen et al., USENIX Security 2022"]
    rows = {line.split()[0]: line for line in lines[4:]}
    assert set(rows) == set(DEFENSES.get("flame").Params.model_fields) - {"name"}
    noise = DEFENSES.get("flame").Params.model_fields["noise_lambda"]
    assert rows["noise_lambda"].split()[1:5] == ["float", "(>=", "0.0)", str(noise.default)]
    assert rows["noise_lambda"].endswith(noise.description)
    assert "models | updates   models" in rows["distance"]
    both = CliRunner().invoke(app, ["describe", "restore"]).stdout  # an inspector and a repair
    assert "restore: inspector, in inspection.methods" in both and "restore: repair, in inspection.repair" in both
    assert "  no parameters" in CliRunner().invoke(app, ["describe", "digits"]).stdout
    assert CliRunner().invoke(app, ["methods", "flame"]).stdout == "\n".join(lines) + "\n"  # the alias


def test_describe_with_an_unknown_name_suggests_the_closest() -> None:
    result = CliRunner().invoke(app, ["describe", "flme"])
    assert result.exit_code == 2
    assert result.stderr == "flme: no such method (did you mean flame?); `fedsec list` lists them\n"


def test_run_warns_about_a_degenerate_attack_and_still_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fedsec.fl.simulation

    monkeypatch.setattr(fedsec.fl.simulation, "simulate",
                        lambda scenario, run_dir, show_progress: {"ma": 0.5, "rounds": 1, "wall_s": 1.0})
    path = tmp_path / "alie.yaml"
    path.write_text(f"name: alie\nrounds: 1\ndata: {{dataset: digits, num_clients: 10}}\nmodel: {{name: mlp}}\n"
                    f"attack: {{fraction: 0.2, model: {{name: alie}}}}\noutput: {{dir: {tmp_path / 'runs'}}}\n")
    result = CliRunner().invoke(app, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"{path}: warning: attack.model: alie is computed from the benign updates")
    assert result.stderr.rstrip().endswith("(set attack.collusion: full-knowledge)")
    assert "final MA 50.00% after 1 rounds" in result.stdout
