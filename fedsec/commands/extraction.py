"""``fedsec extract`` (a typer function, registered in :mod:`fedsec.cli`): steal a finished run's
model through its prediction API, as a scenario's ``extraction`` section does during a run, and
keep the stolen copy so that ``fedsec verify --model`` can check it for the owner's watermark."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from torch import nn

from fedsec.commands.inputs import bad_input, load_model, load_owner, parse_settings, read_or_exit
from fedsec.data.datasets import ImageDataset
from fedsec.results import MODEL_FILE, SCENARIO_FILE, write_atomic
from fedsec.scenario import Scenario, ScenarioError, load_scenario, validation_lines
from fedsec.watermark.owner import WatermarkOwner

if TYPE_CHECKING:
    from fedsec.extraction import ExtractionConfig
    from fedsec.extraction.audit import ExtractionAudit

COPIES_DIR = "extracted"
"""Run subdirectory of the stolen copies (model files like the run's model.pt)."""
RECORD_FILE = "extracted.jsonl"
"""One record per ``fedsec extract`` call, appended in the run directory."""

RunOption = Annotated[Path, typer.Option("--run", help="Run directory of a finished run.")]
ModelOption = Annotated[Path | None, typer.Option("--model", help="Model file to steal (default: the run's model.pt).")]


def copy_name(spec: dict[str, Any], holdout: int, model: Path) -> str:
    """File name of a copy: the attack's name and a digest of what determines the copy (the
    attack's parameters, the holdout and the content of the model file attacked), so a different
    call never replaces it, even one on another model file of the same name."""
    model_digest = hashlib.sha256(model.read_bytes()).hexdigest()
    key = json.dumps({"spec": spec, "holdout": holdout, "model": model_digest}, sort_keys=True)
    return f"{spec['name']}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.pt"


def extraction_config(specs: list[dict[str, Any]], holdout: int, prada_delta: float | None = None) -> ExtractionConfig:
    """The ``extraction`` section the audit reads, built from command options;
    a one-line exit 2 naming the option at fault when a value is out of bounds."""
    from pydantic import ValidationError

    from fedsec.extraction import ExtractionConfig

    try:
        return ExtractionConfig(holdout=holdout, attacks=specs,
                                prada=None if prada_delta is None else {"delta": prada_delta})
    except ValidationError as exc:
        line = validation_lines(exc)[0]
        options = [(f"attacks.{i}.", f"--attack {spec['name']}: ") for i, spec in enumerate(specs)]
        for field, option in (*options, ("prada.delta", "--prada-delta"), ("holdout", "--holdout")):
            line = option + line.removeprefix(field) if line.startswith(field) else line
        raise bad_input(line) from None


def check_holdout(holdout: int, scored: int) -> None:
    """A one-line exit 2 unless some of the ``scored`` test images are left to score the copies on."""
    if holdout >= scored:
        raise bad_input(f"--holdout {holdout}: not less than the {scored:,} test images the run scores")


def steal_copies(run: Path, scenario: Scenario, dataset: ImageDataset, victim: nn.Module, config: ExtractionConfig,
                 owner: WatermarkOwner | None, device: torch.device,
                 ) -> tuple[list[nn.Module], list[dict[str, Any]], ExtractionAudit]:
    """Every attack of ``config`` on ``victim`` as the in-run audit runs them: the stolen copies,
    their records (then PRADA's benign record when it watches) and the audit (its scoring images)."""
    from fedsec.audit import RoundView
    from fedsec.extraction.audit import ExtractionAudit

    audit = ExtractionAudit(config, scenario, dataset, device)
    audit.owner = owner
    view = RoundView(scenario.rounds, True, victim, torch.zeros(1), {}, frozenset(), run)
    copies, records = audit.extract_all(view)
    return copies, records, audit


def _watermark(record: dict[str, Any], prefix: str) -> str:
    """``match 0.20, p 2.0e-03, not verified`` from a record's watermark fields (``prefix`` wm_ or victim_wm_)."""
    if f"{prefix}verified" not in record:
        return "–"
    statistic = next(k for k in record if k.startswith(prefix) and k[len(prefix):] not in ("p_value", "bits", "verified"))
    return (f"{statistic[len(prefix):]} {record[statistic]:.2f}, p {record[prefix + 'p_value']:.1e}, "
            f"{'verified' if record[prefix + 'verified'] else 'not verified'}")


def extract(
    run: RunOption,
    attack: Annotated[str, typer.Option(help="Extraction attack (`fedsec list` shows them).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Attack parameter: key=value (repeatable), e.g. budget=5000, output=probabilities.")] = None,
    holdout: Annotated[int, typer.Option(
        help="Test images set aside, by the run's seeded draw, as the thief's data (thief_data: holdout); "
        "the copy is scored on the other test images.")] = 5000,
    prada_delta: Annotated[float | None, typer.Option(
        help="Also watch the queries with PRADA at this threshold δ (0..1), and 3 benign streams.")] = None,
    model: ModelOption = None,
) -> None:
    """Steal a run's model with an extraction attack; print the copy's accuracy, fidelity and
    watermark, save it under the run's extracted/ and append the record to extracted.jsonl."""
    from fedsec.data.datasets import load_dataset
    from fedsec.extraction import EXTRACTIONS
    from fedsec.training import resolve_device
    from fedsec.watermark.owner import OWNER_DIR, SECRETS_FILE

    if attack not in EXTRACTIONS:
        raise bad_input(f"--attack {attack}: not one of {', '.join(EXTRACTIONS.names())}")
    spec: dict[str, Any] = {"name": attack, **parse_settings(set_)}
    config = extraction_config([spec], holdout, prada_delta)
    if not run.is_dir():
        raise bad_input(f"{run}: not a run directory")
    try:
        scenario = load_scenario(run / SCENARIO_FILE)
    except ScenarioError as exc:
        raise bad_input(exc.lines[0]) from None
    device = resolve_device("auto")
    owner = None
    if scenario.watermark is None:
        dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    else:  # read before the attack: missing or damaged secrets end the command, not the copy
        owner, _, dataset = read_or_exit(lambda: load_owner(run, device), run, run / OWNER_DIR / SECRETS_FILE)
    check_holdout(holdout, scenario.data.test_samples or len(dataset.test_y))
    path = model or run / MODEL_FILE
    victim = read_or_exit(lambda: load_model(path, dataset, device), path, path)
    (stolen,), records, audit = steal_copies(run, scenario, dataset, victim, config, owner, device)

    target = run / COPIES_DIR / copy_name(spec, holdout, path)
    target.parent.mkdir(exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"model": audit.architecture, "dataset": scenario.data.dataset, "state_dict": stolen.state_dict()},
               buffer)
    write_atomic(target, buffer.getvalue())
    record = {**records[0], "model_attacked": str(path), "copy": str(target.relative_to(run)), "holdout": holdout}
    with (run / RECORD_FILE).open("a") as out:
        out.write(json.dumps(record) + "\n")

    alarm = record.get("prada_detected_at", "–") if prada_delta is not None else "–"
    typer.echo("| attack | queries | victim accuracy | copy accuracy | fidelity | PRADA alarm at query | "
               "victim watermark | copy watermark |")
    typer.echo("|---|---|---|---|---|---|---|---|")
    typer.echo(f"| {attack} | {record['queries']:,} / {record['budget']:,} | {record['victim_accuracy']:.2%} | "
               f"{record['accuracy']:.2%} | {record['fidelity']:.2%} | {'none' if alarm is None else alarm} | "
               f"{_watermark(record, 'victim_wm_')} | {_watermark(record, 'wm_')} |")
    if prada_delta is not None:
        benign = records[1]
        alarms = sum(d is not None for d in benign["prada_detected_at"])
        typer.echo(f"PRADA on {benign['streams']} benign streams of {benign['stream_length']:,} queries: {alarms} alarms")
    typer.echo(f"saved {target} (check it: fedsec verify --run {run} --model {target})")
