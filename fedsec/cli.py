"""The ``fedsec`` command line."""

from __future__ import annotations

import difflib
import inspect
import json
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from rich.console import Console

from fedsec.commands import watermark
from fedsec.experiments import commands as experiments
from fedsec.results import RunDirectory
from fedsec.registry import Registry
from fedsec.scenario import Scenario, ScenarioError, load_scenario, read_yaml, scenario_warnings, to_yaml

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


def _warn(path: Path, scenario: Scenario) -> None:
    """Print the scenario's warnings on stderr; the exit code does not change."""
    for line in _located(path, scenario_warnings(scenario)):
        err.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Scenario files to check.")]) -> None:
    """Check scenario files; one line per problem (naming the field), exit 2 if any."""
    problems = []
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            problems += _located(path, exc.lines)
        else:
            typer.echo(f"{path}: ok")
            _warn(path, scenario)
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
    _warn(file or resume / SCENARIO_FILE, scenario)
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


SUMMARY_COLUMNS = ("rounds", "ma", "best_ma", "asr", "max_asr", "durability", "recall", "fpr", "malicious_share",
                   "rejected", "wall_s")
PERCENT_COLUMNS = {"ma", "best_ma", "asr", "max_asr", "recall", "fpr", "malicious_share"}
DETECTION_COLUMNS = {"recall", "fpr"}
"""Null for a defense that never rejects: shown as n/a."""
SEED_COLUMNS = ("ma", "best_ma", "asr", "max_asr", "recall", "fpr", "malicious_share", "wall_s")
"""Columns of the table over seeds."""
SEED_INDEPENDENT = ("seed", "name", "output")
"""Scenario keys that runs of one experiment with different seeds may differ in."""


@app.command()
def summary(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    at_round: Annotated[int | None, typer.Option(help="Read MA/ASR at this round instead of the last.")] = None,
) -> None:
    """A Markdown table of run summaries (one row per run directory); every directory is read
    before the table is printed. Runs of the same scenario with different seeds are then
    gathered in a second table: mean ± 95% confidence half-width (Student's t) over seeds."""
    from fedsec.experiments.report import read_json, read_rounds
    from fedsec.experiments.table import CAPTION, format_values
    from fedsec.results import SCENARIO_FILE, SUMMARY_FILE, RunDirectory

    rows = []
    experiments: dict[str, tuple[str, list[dict[str, object]]]] = {}
    for path in runs:
        run_dir = RunDirectory(path)
        if not run_dir.file(SUMMARY_FILE).is_file():
            raise _fail([f"{path}: no {SUMMARY_FILE} (not a finished run directory)"])
        try:
            values = read_json(run_dir.file(SUMMARY_FILE))
            if at_round is not None:
                records = read_rounds(run_dir)
                if not any(r["round"] == at_round for r in records):
                    raise _fail([f"{path}: no record of round {at_round}"])
                values = {**values, **_up_to(records, at_round)}
            scenario = read_yaml(run_dir.file(SCENARIO_FILE))
        except (ValueError, ScenarioError) as exc:  # a corrupt file, named in the message
            raise _fail([str(getattr(exc, "lines", [exc])[0])]) from None
        rows.append(f"| {path.name} | " + " | ".join(_cell(values.get(key), key) for key in SUMMARY_COLUMNS) + " |")
        key = json.dumps({k: v for k, v in scenario.items() if k not in SEED_INDEPENDENT}, sort_keys=True)
        experiments.setdefault(key, (str(scenario.get("name", path.name)), []))[1].append(values)
    typer.echo("| run | " + " | ".join(SUMMARY_COLUMNS) + " |")
    typer.echo("|---" * (len(SUMMARY_COLUMNS) + 1) + "|")
    typer.echo("\n".join(rows))
    if any(len(group) > 1 for _, group in experiments.values()):
        typer.echo("\n| scenario | seeds | " + " | ".join(SEED_COLUMNS) + " |")
        typer.echo("|---" * (len(SEED_COLUMNS) + 2) + "|")
        for name, group in experiments.values():
            cells = [format_values([values.get(key) for values in group], key) for key in SEED_COLUMNS]
            typer.echo(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
        typer.echo("\n" + CAPTION)


def _up_to(records: list[dict[str, object]], at_round: int) -> dict[str, object]:
    """Summary values as they stood after ``at_round``: MA and ASR of that round, best MA and
    peak ASR of the rounds up to it."""
    seen = [r for r in records if r["round"] <= at_round]
    evaluated = [r for r in seen if "ma" in r]
    with_asr = [r["asr"] for r in evaluated if r.get("asr") is not None]
    return {"rounds": at_round, "ma": seen[-1].get("ma"), "asr": seen[-1].get("asr"),
            "best_ma": max((r["ma"] for r in evaluated), default=None), "max_asr": max(with_asr, default=None)}


def _cell(value: object, key: str) -> str:
    if value is None:
        return "n/a" if key in DETECTION_COLUMNS else "–"
    if key in PERCENT_COLUMNS and isinstance(value, (int, float)):
        return f"{value:.2%}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _families() -> list[tuple[Registry[Any], str]]:
    """Every registry of methods, with where a scenario (or a command) names its methods."""
    from fedsec.attacks import DATA_ATTACKS, MODEL_ATTACKS
    from fedsec.data.datasets import DATASETS
    from fedsec.data.partitioners import PARTITIONERS
    from fedsec.defenses import DEFENSES
    from fedsec.extraction import EXTRACTIONS
    from fedsec.guards import GUARDS
    from fedsec.inspection import INSPECTORS, REPAIRS
    from fedsec.models import MODELS
    from fedsec.privacy import PRIVACY_ATTACKS
    from fedsec.watermark import WATERMARKS
    from fedsec.watermark.removal import REMOVALS

    return [(DATASETS, "data.dataset"), (MODELS, "model.name"), (PARTITIONERS, "data.partitioner"),
            (DATA_ATTACKS, "attack.data"), (MODEL_ATTACKS, "attack.model"), (DEFENSES, "defenses"),
            (WATERMARKS, "watermark.scheme"), (REMOVALS, "fedsec attack-watermark --attack"),
            (INSPECTORS, "inspection.methods"), (REPAIRS, "inspection.repair"), (GUARDS, "runtime_guards.chains"),
            (PRIVACY_ATTACKS, "privacy.inversion.attacks or privacy.membership.attack"),
            (EXTRACTIONS, "extraction.attacks")]


def _description(entry: object) -> str:
    """The first paragraph of an entry's docstring, on one line, without reST markup."""
    paragraph = " ".join(inspect.cleandoc(entry.__doc__ or "").split("\n\n")[0].split())
    return re.sub(r":\w+:`([^`]*)`|``([^`]*)``", lambda m: m[1] or m[2], paragraph)


def _first_sentence(text: str, limit: int = 100) -> str:
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]
    return sentence if len(sentence) <= limit else f"{sentence[:limit - 3]}..."


def _type_text(annotation: Any) -> str:
    """A field's type as a scenario author writes values: ``cosine | euclidean``, ``float | null``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin is not None:
        return f"{origin.__name__} of {', '.join(_type_text(a) for a in args if a is not ...)}"
    if annotation is type(None):
        return "null"
    return "mapping" if isinstance(annotation, type) and issubclass(annotation, BaseModel) else annotation.__name__


def _parameter_rows(entry: object) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every parameter a method takes besides its name."""
    model = getattr(entry, "Params", entry)
    fields = getattr(model, "model_fields", {})
    rows = []
    for key, field in fields.items():
        if key == "name":
            continue
        bounds = [f"{symbol} {getattr(m, attr)}" for m in field.metadata
                  for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if hasattr(m, attr)]
        kind = _type_text(field.annotation) + (f" ({', '.join(bounds)})" if bounds else "")
        default = "required" if field.is_required() else field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        shown = default if isinstance(default, str) else json.dumps(default)
        rows.append((key, kind, shown, field.description or ""))
    return rows


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Rows as aligned columns (the last one unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
            for row in rows]


@app.command()
def methods(name: Annotated[str | None, typer.Argument(help="A method: print its parameters.")] = None) -> None:
    """List every registered method by family with a one-line description, or one method's
    parameters (key, type, default, meaning)."""
    families = _families()
    if name is None:
        typer.echo("\n\n".join(
            "\n".join([f"{registry.kind}s, in {where}:",
                       *_table([(n, _first_sentence(_description(registry.get(n)))) for n in registry.names()])])
            for registry, where in families))
        return
    found = [(registry, where) for registry, where in families if name in registry]
    if not found:
        close = difflib.get_close_matches(name, sorted({n for r, _ in families for n in r.names()}), n=1)
        raise _fail([f"{name}: no such method{f' (did you mean {close[0]}?)' if close else ''}; "
                     "`fedsec methods` lists them"])
    for registry, where in found:
        entry = registry.get(name)
        typer.echo(f"{name}: {registry.kind}, in {where}")
        typer.echo(f"  {_description(entry)}")
        rows = _parameter_rows(entry)
        typer.echo("\n".join(_table([("key", "type", "default", "meaning"), *rows]))
                   if rows else "  no parameters")


app.command()(experiments.sweep)
app.command()(experiments.report)
app.command()(experiments.game)
app.command("verify")(watermark.verify)
app.command("attack-watermark")(watermark.attack_watermark)
app.command("watermark-plot")(watermark.watermark_plot)


def main() -> None:
    """Console-script entry point."""
    app()
