"""``fedsec extract`` on a finished run directory: the stolen copy is saved, measured as the audit
measures it, checkable with ``fedsec verify``, deterministic, and bad input exits 2 in one line
without writing anything."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.commands.inputs import load_model
from fedsec.extraction.audit import holdout_split
from fedsec.extraction.base import agreement
from fedsec.results import MODEL_FILE, SCENARIO_FILE, write_atomic
from fedsec.scenario import load_scenario, parse_scenario, to_yaml
from fedsec.training import to_input
from fedsec.watermark.owner import OWNER_DIR, WatermarkOwner

CPU = torch.device("cpu")
WATERMARK = {"scheme": {"name": "keyed-labels", "triggers": 50}, "key": "seeded", "owner_samples": 300,
             "embedding": {"max_steps": 300, "lr": 0.05}}
STEAL = ["--attack", "knockoff", "--set", "budget=200", "--set", "epochs=30", "--holdout", "200"]


def finished_run(folder: Path, victim, watermark: dict | None) -> Path:  # noqa: ANN001
    """A run directory as a finished run leaves it: scenario, model.pt, and the owner's secrets."""
    scenario = parse_scenario({"name": "stolen", "rounds": 2, "data": {"dataset": "digits", "num_clients": 4},
                               "model": {"name": "cnn"}, **({"watermark": watermark} if watermark else {})})
    folder.mkdir()
    write_atomic(folder / SCENARIO_FILE, to_yaml(scenario))
    model = copy.deepcopy(victim.model)
    if watermark:
        WatermarkOwner(scenario.watermark, scenario, victim.dataset, CPU, folder / OWNER_DIR).after_aggregation(1, model)
    torch.save({"model": "cnn", "dataset": "digits", "state_dict": model.state_dict()}, folder / MODEL_FILE)
    return folder


def extract(run: Path, *options: str):  # noqa: ANN201
    return CliRunner().invoke(app, ["extract", "--run", str(run), *options])


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "extracted.jsonl").read_text().splitlines()]


def test_the_copy_is_saved_measured_and_checked_for_the_watermark(victim, tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run", victim, WATERMARK)
    result = extract(run, *STEAL)
    assert result.exit_code == 0, result.output
    assert "| knockoff | 200 / 200 |" in result.output
    (record,) = records(run)
    assert record["queries"] == 200 and record["holdout"] == 200 and record["model_attacked"] == str(run / MODEL_FILE)
    assert record["victim_wm_verified"] == 1 and record["wm_verified"] == 0  # the copy learns the task only
    assert record["fidelity"] > 0.6

    # The saved file is the copy that was measured: its fidelity on the scoring images is the record's.
    digits = victim.dataset
    _, scoring = holdout_split(len(digits.test_y), 200, load_scenario(run / SCENARIO_FILE).seed)
    stolen, marked = (load_model(path, digits, CPU) for path in (run / record["copy"], run / MODEL_FILE))
    x = to_input(digits.test_x[scoring], CPU)
    assert agreement(stolen, marked, x, digits.test_y[scoring]) == pytest.approx(
        (record["accuracy"], record["fidelity"]), abs=1e-6)
    assert CliRunner().invoke(app, ["verify", "--run", str(run), "--model", str(run / record["copy"])]).exit_code == 1
    assert CliRunner().invoke(app, ["verify", "--run", str(run)]).exit_code == 0

    # Deterministic: the same call gives the same copy in the same file; another budget, another file.
    first = (run / record["copy"]).read_bytes()
    assert extract(run, *STEAL).exit_code == 0
    assert extract(run, *STEAL, "--set", "budget=100").exit_code == 0
    again, other = records(run)[1:]
    assert again["copy"] == record["copy"] and again["fidelity"] == record["fidelity"]
    assert other["copy"] != record["copy"] and other["queries"] == 100
    assert (run / record["copy"]).read_bytes() == first

    # Another model file of the same name (a different round's model, say) gets its own copy.
    elsewhere = tmp_path / "elsewhere" / MODEL_FILE
    elsewhere.parent.mkdir()
    state = torch.load(run / MODEL_FILE, weights_only=True)
    state["state_dict"] = {k: v * 0.9 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, elsewhere)
    assert extract(run, *STEAL, "--model", str(elsewhere)).exit_code == 0
    assert records(run)[-1]["copy"] not in (record["copy"], other["copy"])
    assert (run / record["copy"]).read_bytes() == first


def test_a_run_without_watermark_gets_the_copy_without_a_check(victim, tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run", victim, None)
    result = extract(run, *STEAL, "--prada-delta", "0.9")
    assert result.exit_code == 0, result.output
    (record,) = records(run)
    assert not any(key.startswith(("wm_", "victim_wm_")) for key in record)
    assert "prada_detected_at" in record and "PRADA on 3 benign streams of 160 queries" in result.output


@pytest.mark.parametrize(("options", "message"), [
    (["--attack", "copycat"], "--attack copycat: not one of jacobian, knockoff, retraining"),
    (["--attack", "knockoff", "--set", "budget=0"], "--attack knockoff: budget: input should be greater than"),
    (["--attack", "knockoff", "--set", "colour=1"], "--attack knockoff: colour: unknown key"),
    (["--attack", "knockoff", "--set", "budget"], "--set budget: expected key=value"),
    (["--attack", "knockoff", "--holdout", "360"], "--holdout 360: not less than the 360 test images the run scores"),
    (["--attack", "knockoff", "--prada-delta", "1.5"], "--prada-delta: input should be less than 1"),
    (["--attack", "knockoff", "--holdout", "200", "--model", "missing.pt"], "missing.pt"),
])
def test_bad_input_exits_2_in_one_line_and_writes_nothing(victim, tmp_path: Path, options: list[str],
                                                          message: str) -> None:
    run = finished_run(tmp_path / "run", victim, None)
    before = sorted(p.name for p in run.iterdir())
    result = CliRunner().invoke(app, ["extract", "--run", str(run), *options])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_watermarked_run_without_its_secrets_is_refused(victim, tmp_path: Path) -> None:
    run = finished_run(tmp_path / "run", victim, WATERMARK)
    for file in (run / OWNER_DIR).iterdir():
        file.unlink()
    result = extract(run, *STEAL)
    assert result.exit_code == 2 and "no owner/" in result.output and not (run / "extracted").exists()
