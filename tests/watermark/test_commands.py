"""`fedsec verify` and `fedsec attack-watermark` on a small run directory built without a federation."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.results import write_atomic
from fedsec.scenario import to_yaml
from fedsec.watermark.owner import WatermarkOwner


def _save(model: torch.nn.Module, path: Path) -> None:
    torch.save({"model": "cnn", "dataset": "digits", "state_dict": model.state_dict()}, path)


def test_verify_exit_codes_and_robustness_table(digits, clean_models, scenario_with, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    scenario = scenario_with({"name": "uchida", "bits": 32})
    write_atomic(run / "scenario.yaml", to_yaml(scenario))
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), run / "owner")
    marked = copy.deepcopy(clean_models[1])
    owner.after_aggregation(1, marked)
    _save(marked, run / "model.pt")
    _save(clean_models[2], tmp_path / "clean.pt")
    cli = CliRunner()

    verified = cli.invoke(app, ["verify", "--run", str(run)])
    assert verified.exit_code == 0 and "VERIFIED" in verified.output
    clean = cli.invoke(app, ["verify", "--run", str(run), "--model", str(tmp_path / "clean.pt")])
    assert clean.exit_code == 1 and "NOT VERIFIED" in clean.output
    missing = cli.invoke(app, ["verify", "--run", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1

    table = cli.invoke(app, ["attack-watermark", "--run", str(run), "--attack", "prune", "--strength", "0.1,0.9"])
    assert table.exit_code == 0, table.output
    rows = [line for line in table.output.splitlines() if line.startswith("| prune")]
    assert [r.split("|")[2].strip() for r in rows] == ["rate=0.1", "rate=0.9"]
    assert (run / "robustness-prune.md").read_text().count("| prune") == 2
