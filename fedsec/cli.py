"""The ``fedsec`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsec.commands import watermark
from fedsec.experiments import commands as experiments
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario, ScenarioError, load_scenario, to_yaml

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fedsec: a federated-learning security testbed on Flower.")
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
"""Exit codes: 0 success (verify: verified), 1 not verified (verify only), 2 bad input or refused,
3 a run that started and stopped before its end (Ray or a worker failed)."""


def _fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _located(path: Path, lines: list[str]) -> list[str]:
    """Problem lines prefixed with the file they are about (unless they already name it)."""
    return [line if line.startswith(str(path)) else f"{path}: {line}" for line in lines]


def _load_or_exit(file: Path, overrides: list[str] | None) -> Scenario:
    try:
        return load_scenario(file, overrides or [])
    except ScenarioError as exc:
        raise _fail(_located(file, exc.lines)) from None


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Scenario files to check.")]) -> None:
    """Check scenario files; one line per problem (naming the field), exit 2 if any."""
    problems = []
    for path in files:
        try:
            load_scenario(path)
        except ScenarioError as exc:
            problems += _located(path, exc.lines)
        else:
            typer.echo(f"{path}: ok")
    if problems:
        raise _fail(problems)


@app.command()
def resolve(
    file: Annotated[Path, typer.Argument(help="Scenario file (YAML).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable).")] = None,
    key: Annotated[str | None, typer.Option(help="Print only this key.path's value.")] = None,
) -> None:
    """Print the scenario with every default filled in and overrides applied."""
    scenario = _load_or_exit(file, set_)
    if key is None:
        typer.echo(to_yaml(scenario), nl=False)
        return
    value = scenario.model_dump(mode="json")
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise _fail([f"--key {key}: no such key"])
        value = value[part]
    typer.echo(value if not isinstance(value, (dict, list)) else json.dumps(value))


@app.command()
def run(
    file: Annotated[Path | None, typer.Argument(help="Scenario file (YAML).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue this run directory from its last checkpoint.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Run one scenario as a Flower simulation and write its run directory (or resume one)."""
    from fedsec.results import SCENARIO_FILE, SUMMARY_FILE, RunDirectory, write_atomic

    if (file is None) == (resume is None):
        raise _fail(["give a scenario file or --resume RUN_DIR (not both)"])
    if resume is not None:
        if set_:
            raise _fail(["--set: a resumed run keeps its scenario.yaml; overrides are not allowed"])
        run_dir = RunDirectory(resume)
        scenario = _load_or_exit(run_dir.file(SCENARIO_FILE), None)
        if run_dir.file(SUMMARY_FILE).exists():
            typer.echo(f"{resume}: already finished ({SUMMARY_FILE} exists)")
            return
    else:
        scenario = _load_or_exit(file, set_)

    from fedsec.fl.simulation import RunFailed, RunRefused, simulate
    from fedsec.preflight import preflight_problems

    if problems := preflight_problems(scenario):
        raise _fail(_located(file or resume / SCENARIO_FILE, problems))
    if resume is None:
        run_dir = RunDirectory.create(scenario.output.dir, scenario.name)
        write_atomic(run_dir.file(SCENARIO_FILE), to_yaml(scenario))
    elif problems := _resume_problems(run_dir, scenario):
        raise _fail(_located(resume, problems))
    typer.echo(f"run directory: {run_dir.path}")
    try:
        summary = simulate(scenario, run_dir, show_progress=not quiet)
    except RunRefused as exc:
        raise _fail([f"{run_dir.path}: {exc}"]) from None
    except RunFailed as exc:
        err.print(f"{run_dir.path}: the run stopped: {exc} (records so far are kept; "
                  f"`fedsec run --resume {run_dir.path}` continues)", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_RUN_FAILED) from None
    ma = summary.get("ma")
    typer.echo(f"final MA {ma:.2%} after {summary['rounds']} rounds in {summary['wall_s']:.1f} s"
               if ma is not None else f"finished {summary['rounds']} rounds")


def _resume_problems(run_dir: RunDirectory, scenario: Scenario) -> list[str]:
    """Why ``run_dir`` cannot be resumed with ``scenario`` (its own scenario.yaml); empty when it can."""
    from fedsec.checkpoint import CHECKPOINT_FILE, CheckpointError, read_checkpoint, resume_problems, scenario_digest
    from fedsec.crypto.key_authority import recorded_fingerprint
    from fedsec.results import METRICS_FILE

    try:
        checkpoint = read_checkpoint(run_dir.file(CHECKPOINT_FILE))
    except CheckpointError as exc:
        return [str(exc)]
    if checkpoint is None:
        return []
    fingerprint = recorded_fingerprint(run_dir.path) if scenario.encryption.enabled else None
    records = run_dir.rounds()
    if not all(isinstance(r, dict) and isinstance(r.get("round"), int) for r in records):
        return [f"{METRICS_FILE}: holds lines that are not round records"]
    return resume_problems(checkpoint, scenario_digest(scenario.model_dump_json()), scenario.rounds, fingerprint,
                           [r["round"] for r in records])


SUMMARY_COLUMNS = ("rounds", "ma", "best_ma", "asr", "max_asr", "durability", "recall", "fpr", "rejected", "wall_s")
PERCENT_COLUMNS = {"ma", "best_ma", "asr", "max_asr", "recall", "fpr"}


@app.command()
def summary(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    at_round: Annotated[int | None, typer.Option(help="Read MA/ASR at this round instead of the last.")] = None,
) -> None:
    """A Markdown table of run summaries (one row per run directory); every directory is read
    before the table is printed."""
    from fedsec.experiments.report import read_json, read_rounds
    from fedsec.results import SUMMARY_FILE, RunDirectory

    rows = []
    for path in runs:
        run_dir = RunDirectory(path)
        if not run_dir.file(SUMMARY_FILE).is_file():
            raise _fail([f"{path}: no {SUMMARY_FILE} (not a finished run directory)"])
        try:
            values = read_json(run_dir.file(SUMMARY_FILE))
            if at_round is not None:
                record = next((r for r in read_rounds(run_dir) if r["round"] == at_round), None)
                if record is None:
                    raise _fail([f"{path}: no record of round {at_round}"])
                values = {**values, "rounds": at_round, **{k: record.get(k) for k in ("ma", "asr")}}
        except ValueError as exc:  # a corrupt file, named in the message
            raise _fail([str(exc)]) from None
        rows.append(f"| {path.name} | " + " | ".join(_cell(values.get(key), key) for key in SUMMARY_COLUMNS) + " |")
    typer.echo("| run | " + " | ".join(SUMMARY_COLUMNS) + " |")
    typer.echo("|---" * (len(SUMMARY_COLUMNS) + 1) + "|")
    typer.echo("\n".join(rows))


def _cell(value: object, key: str) -> str:
    if value is None:
        return "–"
    if key in PERCENT_COLUMNS and isinstance(value, (int, float)):
        return f"{value:.2%}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


app.command()(experiments.sweep)
app.command()(experiments.report)
app.command()(experiments.game)
app.command("verify")(watermark.verify)
app.command("attack-watermark")(watermark.attack_watermark)
app.command("watermark-plot")(watermark.watermark_plot)


def main() -> None:
    """Console-script entry point."""
    app()
