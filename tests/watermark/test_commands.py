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

    # Extraction attacks get rows of their own: the copy's MA on the test images the thief did not query.
    stolen = cli.invoke(app, ["attack-watermark", "--run", str(run), "--attack", "knockoff", "--strength", "300",
                              "--set", "epochs=20", "--holdout", "300"])
    assert stolen.exit_code == 0, stolen.output
    (row,) = [line for line in stolen.output.splitlines() if line.startswith("| knockoff (extracted)")]
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1] == "budget=300" and float(cells[2].rstrip("%")) > 50  # the copy learned the task ...
    assert cells[5] == "no"  # ... but not the owner's weight-space watermark
    scored = len(digits.test_y)
    assert f"answers to 300 test images; its MA is on the other {scored - 300:,}" in stolen.output
    assert row in (run / "robustness-knockoff.md").read_text()
    for options, message in ((["--strength", "0"], "--attack knockoff: budget: input should be greater than"),
                             (["--holdout", str(scored)], f"--holdout {scored}: not less than")):
        refused = cli.invoke(app, ["attack-watermark", "--run", str(run), "--attack", "knockoff", *options])
        assert refused.exit_code == 2 and message in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1
