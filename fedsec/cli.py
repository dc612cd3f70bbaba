"""The ``fedsec`` command line."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsec.commands import extraction, watermark
from fedsec.experiments import commands as experiments
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario, ScenarioError, load_scenario, read_yaml, scenario_warnings, to_yaml

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="fedsec: a federated-learning security testbed on Flower.")
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
"""Exit codes: 0 success (verify: verified; trace: a client named), 1 not verified (verify) or nobody
named (trace), 2 bad input or refused, 3 a run that started and stopped before its end (Ray or a
worker failed)."""


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


SUMMARY_COLUMNS = ("rounds", "ma", "best_ma", "asr", "max_asr", "asr_clean_baseline", "durability", "recall", "fpr",
                   "malicious_share", "rejected", "wall_s")
DETECTION_COLUMNS = {"recall", "fpr"}
"""Null for a defense that never rejects: shown as n/a."""
SEED_COLUMNS = ("ma", "best_ma", "asr", "max_asr", "asr_clean_baseline", "recall", "fpr", "malicious_share", "wall_s")
"""Columns of the table over seeds."""
SEED_INDEPENDENT = ("seed", "name", "output")
"""Scenario keys that runs of one experiment with different seeds may differ in."""


@app.command()
def summary(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    at_round: Annotated[int | None, typer.Option(
        help="Every column as it stood after this round (recomputed from the rounds up to it).")] = None,
) -> None:
    """A Markdown table of run summaries (one row per run directory, rates in %, with the attack and
    defense of each run); every directory is read before the table is printed. Runs of the same
    scenario with different seeds are then gathered in a second table: mean ± 95% confidence
    half-width (Student's t) over seeds."""
    from fedsec.experiments.report import read_json, read_rounds
    from fedsec.experiments.table import (
        CAPTION,
        SHOWN,
        format_values,
        header,
        run_settings,
        settings_line,
        split_settings,
    )
    from fedsec.results import SCENARIO_FILE, SUMMARY_FILE, RunDirectory

    rows: list[dict[str, object]] = []
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
        rows.append({"run": path.name, **values, **run_settings(scenario)})
        key = json.dumps({k: v for k, v in scenario.items() if k not in SEED_INDEPENDENT}, sort_keys=True)
        experiments.setdefault(key, (str(scenario.get("name", path.name)), []))[1].append(values)
    shared, varying = split_settings(rows)
    if at_round is not None:
        typer.echo(f"Every column as it stood after round {at_round} (durability, a whole-run measure, is left out).\n")
    typer.echo(settings_line(shared), nl=False)
    typer.echo("| " + " | ".join(["run", *(SHOWN[k] for k in varying), *(header(k) for k in SUMMARY_COLUMNS)]) + " |")
    typer.echo("|---" * (len(varying) + len(SUMMARY_COLUMNS) + 1) + "|")
    for row in rows:
        typer.echo("| " + " | ".join([str(row["run"]), *(str(row[k]) for k in varying),
                                      *(_cell(row.get(key), key) for key in SUMMARY_COLUMNS)]) + " |")
    if any(len(group) > 1 for _, group in experiments.values()):
        typer.echo("\n| scenario | seeds | " + " | ".join(header(k) for k in SEED_COLUMNS) + " |")
        typer.echo("|---" * (len(SEED_COLUMNS) + 2) + "|")
        for name, group in experiments.values():
            cells = [format_values([values.get(key) for values in group], key) for key in SEED_COLUMNS]
            typer.echo(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
        typer.echo("\n" + CAPTION)


def _up_to(records: list[dict[str, object]], at_round: int) -> dict[str, object]:
    """Summary values as they stood after ``at_round``, from the rounds up to it: MA and ASR of
    that round, best MA and peak ASR, detection rates of the summed confusion counts (n/a when
    the records hold none: a defense that never rejects), mean malicious share, rejected updates,
    time (the rounds' durations); durability (whole-run) is left out."""
    from fedsec.fl.server import COUNTS, detection_rates

    seen = [r for r in records if r["round"] <= at_round]
    evaluated = [r for r in seen if "ma" in r]
    with_asr = [r["asr"] for r in evaluated if r.get("asr") is not None]
    shares = [r["malicious_share"] for r in seen if r.get("malicious_share") is not None]
    counted = all(r.get(k) is not None for r in seen for k in COUNTS)
    return {"rounds": at_round, "ma": seen[-1].get("ma"), "asr": seen[-1].get("asr"),
            "best_ma": max((r["ma"] for r in evaluated), default=None), "max_asr": max(with_asr, default=None),
            "durability": None, "rejected": sum(int(r.get("rejected") or 0) for r in seen),
            "malicious_share": sum(shares) / len(shares) if shares else None,
            "wall_s": sum(float(r.get("round_s") or 0.0) for r in seen),
            **(detection_rates(**{k: sum(int(r[k]) for r in seen) for k in COUNTS}) if counted
               else {"recall": None, "fpr": None})}


def _cell(value: object, key: str) -> str:
    """A value as the console shows it: rates in percent (the header says so), n/a for a
    detection rate nobody recorded."""
    from fedsec.experiments.table import RATES

    if value is None:
        return "n/a" if key in DETECTION_COLUMNS else "–"
    if key in RATES and isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _complete_method(incomplete: str) -> list[str]:
    from fedsec import catalogue

    return sorted({n for f in catalogue.families() for n in f.registry.names() if n.startswith(incomplete)})


def _complete_group(incomplete: str) -> list[str]:
    from fedsec.catalogue import GROUPS

    return [g for g in GROUPS if g.startswith(incomplete)]


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """Rows as aligned columns (the last one unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [indent + "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]])
            for row in rows]


@app.command("list")
def list_(family: Annotated[str | None, typer.Argument(
        help="attacks, defenses, watermarks, removals, partitioners, datasets, models, inspectors, repairs, "
             "guards, privacy or extraction (default: all).", autocompletion=_complete_group)] = None) -> None:
    """List registered methods by family: name, paper, one-line description."""
    from fedsec import catalogue

    if family is None:
        shown = catalogue.families()
    elif family in catalogue.GROUPS:
        shown = catalogue.group(family)
    else:
        close = difflib.get_close_matches(family, list(catalogue.GROUPS), n=1)
        raise _fail([f"{family}: no such family{f' (did you mean {close[0]}?)' if close else ''}; "
                     f"one of {', '.join(catalogue.GROUPS)}"])
    blocks = []
    for listed in shown:
        rows = [(n, (catalogue.paper(listed.registry.get(n)) or "-").split(', "')[0],  # the title: describe
                 catalogue.first_sentence(catalogue.description(listed.registry.get(n))))
                for n in listed.registry.names()]
        blocks.append("\n".join([f"{listed.title}, in {listed.where}:", *_table(rows)]))
    typer.echo("\n\n".join(blocks))


@app.command()
def describe(name: Annotated[str, typer.Argument(help="A method's name (`fedsec list` shows them).",
                                                 autocompletion=_complete_method)]) -> None:
    """One method's family, paper, description and parameters (key, type with bounds, default,
    meaning with unit)."""
    from fedsec import catalogue

    found = [f for f in catalogue.families() if name in f.registry]
    if not found:
        close = difflib.get_close_matches(name, sorted({n for f in catalogue.families() for n in f.registry.names()}),
                                          n=1)
        raise _fail([f"{name}: no such method{f' (did you mean {close[0]}?)' if close else ''}; "
                     "`fedsec list` lists them"])
    for family in found:
        entry = family.registry.get(name)
        typer.echo(f"{name}: {family.registry.kind}, in {family.where}")
        if cited := catalogue.paper(entry):
            typer.echo(f"  paper: {cited}")
        typer.echo(f"  {catalogue.description(entry)}")
        rows = [(p.key, p.type, p.default, p.meaning) for p in catalogue.parameters(entry)]
        typer.echo("\n".join(_table([("key", "type", "default", "meaning"), *rows]))
                   if rows else "  no parameters")


@app.command(hidden=True)
def methods(name: Annotated[str | None, typer.Argument(help="A method: print its parameters.")] = None) -> None:
    """Alias: ``fedsec list`` without NAME, ``fedsec describe NAME`` with it."""
    if name is None:
        list_()
    else:
        describe(name)


@app.command("inspect-bench")
def inspect_bench(
    clean: Annotated[int, typer.Option(help="Clean models in the evaluated population (different seeds).")] = 20,
    backdoored: Annotated[int, typer.Option(
        help="Backdoored models: BadNets, Blended, SIG and WaNet in turn, different targets and patch corners.")] = 20,
    seed: Annotated[int, typer.Option(help="First seed of the members and seed of the inspectors' draws.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs of every member.")] = 3,
    pretrain_epochs: Annotated[int, typer.Option(
        help="Epochs of one shared clean model every member starts from (0: each from its own random "
             "initialisation; the weight-space detector's thesis fine-tunes shared pre-trained weights).")] = 0,
    subset: Annotated[int, typer.Option(
        help="Training images per member (a seeded draw of the training set).")] = 10_000,
    poison_fraction: Annotated[float, typer.Option(
        help="Share (0..1] of each batch a backdoored member poisons (SIG: num_classes times it of its "
             "target-class rows).")] = 0.1,
    min_asr: Annotated[float, typer.Option(
        help="ASR (0..1) below which a backdoored member did not take the backdoor: reported, left out of TPR.")] = 0.5,
    clean_samples: Annotated[int, typer.Option(
        help="Clean training images (never test images) every inspector gets.")] = 500,
    inspector: Annotated[list[str] | None, typer.Option(
        "--inspector", help="Inspector run (repeatable; default: every registered one).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Inspector parameter override: inspector.key=value (YAML value; repeatable).")] = None,
    model: Annotated[str, typer.Option(help="Architecture of every member.")] = "cnn",
    cache_dir: Annotated[Path, typer.Option(
        help="Trained members, one file per member named by a hash of its spec and training settings.")]
        = Path("runs/inspect-bench/cache"),
    out: Annotated[Path, typer.Option(help="Output directory: table.md, members.jsonl, roc.png.")]
        = Path("runs/inspect-bench"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Model population benchmark: train (or load from the cache) clean and backdoored Fashion-MNIST
    models, run the inspectors on every one and print TPR, FPR, AUC, target-class accuracy, queries
    and seconds per model (Markdown); writes the table, per-member rows and a ROC plot to --out."""
    from fedsec.inspection import INSPECTORS
    from fedsec.inspection.population import TrainingSettings, build_inspectors, parse_overrides, run_benchmark

    problems = [f"--{name.replace('_', '-')} {value}: expected {bound}" for name, value, ok, bound in (
        ("clean", clean, 1 <= clean <= 1_000, "1..1000"),
        ("backdoored", backdoored, 1 <= backdoored <= 1_000, "1..1000"),
        ("seed", seed, 0 <= seed <= 2**31, "0..2^31"), ("min_asr", min_asr, 0 <= min_asr <= 1, "a share in 0..1"),
        ("clean_samples", clean_samples, 1 <= clean_samples <= 60_000, "1..60000")) if not ok]
    if device not in ("auto", "cpu", "cuda"):
        problems.append(f"--device {device}: expected auto, cpu or cuda")
    settings = TrainingSettings(model=model, subset=subset, epochs=epochs, poison_fraction=poison_fraction,
                                pretrain_epochs=pretrain_epochs, pretrain_seed=seed + 3000)
    problems += settings.problems()
    names = list(dict.fromkeys(inspector or INSPECTORS.names()))
    problems += [f"--inspector {name}: no such inspector; one of {', '.join(INSPECTORS.names())}"
                 for name in names if name not in INSPECTORS]
    try:
        inspectors = build_inspectors(names, parse_overrides(param or [], names)) if not problems else []
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise _fail(problems)

    from fedsec.data.datasets import DatasetUnavailable, load_dataset
    from fedsec.training import resolve_device

    try:
        dataset = load_dataset(settings.dataset)
    except DatasetUnavailable as exc:
        raise _fail([str(exc)]) from None
    if problems := settings.problems(len(dataset.train_y)):
        raise _fail(problems)
    result = run_benchmark(inspectors, dataset, settings, clean=clean, backdoored=backdoored, seed=seed,
                           clean_samples=clean_samples, min_asr=min_asr, cache_dir=cache_dir, out_dir=out,
                           device=resolve_device(device), echo=typer.echo)
    typer.echo("")
    typer.echo(result.markdown, nl=False)
    typer.echo(f"\nwritten: {out / 'table.md'}, {out / 'members.jsonl'}, {out / 'roc.png'}")


app.command()(experiments.sweep)
app.command()(experiments.report)
app.command()(experiments.game)
app.command("verify")(watermark.verify)
app.command("trace")(watermark.trace)
app.command("extract")(extraction.extract)
app.command("attack-watermark")(watermark.attack_watermark)
app.command("watermark-plot")(watermark.watermark_plot)


def main() -> None:
    """Console-script entry point."""
    app()
