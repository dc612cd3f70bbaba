"""``fedsec verify``, ``fedsec trace``, ``fedsec attack-watermark`` and ``fedsec watermark-plot`` (typer functions,
registered in :mod:`fedsec.cli`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any

import typer
from torch import nn

from fedsec.commands.extraction import check_holdout, extraction_config, steal_copies
from fedsec.commands.inputs import bad_input, load_model, load_owner, parse_settings, read_or_exit
from fedsec.results import MODEL_FILE, RunDirectory, write_atomic
from fedsec.scenario import ScenarioError, load_scenario, parse_value, validation_lines
from fedsec.watermark.owner import OWNER_DIR, SECRETS_FILE, template_model

EXIT_VERIFIED, EXIT_NOT_VERIFIED = 0, 1

# The grid of `attack-watermark --all`: attack -> strengths of its `strength` parameter (an
# extraction attack's strength is its query budget).
DEFAULT_GRID: dict[str, list[Any]] = {
    "finetune": [1, 2, 5, 10],
    "prune": [0.1, 0.3, 0.5, 0.7, 0.9],
    "quantize": ["int8", "fp16"],
    "overwrite": [50, 200],
    "distill": [5],
    "knockoff": [5000],
    "retraining": [5000],
    "jacobian": [5000],
}
EXTRACTION_STRENGTH = "budget"
DEFAULT_HOLDOUT = 5000
"""Test images handed to extraction attacks as the thief's data, at most half of those scored."""

RunOption = Annotated[Path, typer.Option("--run", help="Run directory of a watermarked run.")]
ModelOption = Annotated[Path | None, typer.Option("--model", help="Model file to check (default: the run's model.pt).")]


def _load(run: Path, model_file: Path | None):
    """The run's owner, scenario, dataset and the model to check; one-line exit 2 on bad input."""
    from fedsec.training import resolve_device

    if not run.is_dir():
        raise bad_input(f"{run}: not a run directory")
    device = resolve_device("auto")
    owner, scenario, dataset = read_or_exit(lambda: load_owner(run, device), run, run / OWNER_DIR / SECRETS_FILE)
    path = model_file or run / MODEL_FILE
    model = read_or_exit(lambda: load_model(path, dataset, device), path, path)
    return owner, scenario, dataset, model


def verify(run: RunOption, model: ModelOption = None) -> None:
    """Check a model for the run owner's watermark; exit 0 verified, 1 not, 2 bad input."""
    owner, _, _, net = _load(run, model)
    path = model or run / MODEL_FILE
    v = read_or_exit(lambda: owner.verify(net), path, path)  # a model of another shape than the watermark's
    typer.echo(
        f"{owner.scheme.params.name}: {v.statistic_name}={v.statistic:.4f} ({v.matches}/{v.total} secret answers), "
        f"p-value={v.p_value:.3g}, {v.bits:.1f} bits, false-alarm bound {owner.config.false_alarm:g}: "
        f"{'VERIFIED' if v.verified else 'NOT VERIFIED'}")
    raise typer.Exit(EXIT_VERIFIED if v.verified else EXIT_NOT_VERIFIED)


def trace(run: RunOption, model: ModelOption = None) -> None:
    """Name the client a leaked copy of the global model came from, by the per-client fingerprints
    of the run (watermark.fingerprints); exit 0 a client is named, 1 nobody, 2 bad input."""
    owner, _, _, net = _load(run, model)
    if owner.fingerprints is None:
        raise bad_input(f"{run}: the scenario has no watermark.fingerprints section: no client can be traced")
    path = model or run / MODEL_FILE
    found = read_or_exit(lambda: owner.trace(net), path, path)  # a model of another shape
    best = int(found.matches.argmax())
    bound = f"{found.required} needed for a false-accusation probability of at most " \
            f"{owner.config.fingerprints.false_accusation:g}"
    if found.client is None:
        typer.echo(f"nobody: the closest fingerprint, client {best}'s, matches {int(found.matches[best])}/"
                   f"{found.bits} bits ({bound})")
        raise typer.Exit(EXIT_NOT_VERIFIED)
    typer.echo(f"client {found.client}: {int(found.matches[best])}/{found.bits} fingerprint bits match ({bound})")
    raise typer.Exit(EXIT_VERIFIED)


def attack_watermark(
    run: RunOption,
    attack: Annotated[str | None, typer.Option(
        help="Removal attack (distill, finetune, overwrite, prune, quantize) or extraction attack "
        "(jacobian, knockoff, retraining).")] = None,
    strength: Annotated[str | None, typer.Option(
        help="Comma-separated values of the attack's strength parameter (an extraction attack's: budget, "
        "in queries).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Other attack parameter: key=value (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run the default grid of every attack.")] = False,
    model: ModelOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the attacker's data and randomness.")] = 0,
    holdout: Annotated[int | None, typer.Option(
        help=f"Test images given to the extraction attacks as the thief's data, drawn as `fedsec extract` draws "
        f"them; their copies are scored on the others (default: {DEFAULT_HOLDOUT:,}, at most half).")] = None,
) -> None:
    """Attack the watermarked model and print a Markdown robustness table (also saved in the run dir):
    removal attacks on the model itself, extraction attacks on its answers (the copies' rows)."""
    from pydantic import ValidationError

    from fedsec.extraction import EXTRACTIONS
    from fedsec.training import evaluate
    from fedsec.watermark.removal import REMOVALS, RemovalContext, build_removal

    if all_ == (attack is not None):
        raise bad_input("give --attack (with --strength) or --all")
    settings = parse_settings(set_)
    if all_:
        grid, settings = DEFAULT_GRID, {}  # --set applies to one --attack only
    else:
        if attack not in REMOVALS and attack not in EXTRACTIONS:
            raise bad_input(f"--attack {attack}: not one of {', '.join([*REMOVALS.names(), *EXTRACTIONS.names()])}")
        default = (EXTRACTIONS.get(attack).Params.model_fields[EXTRACTION_STRENGTH].default if attack in EXTRACTIONS
                   else REMOVALS.get(attack).Params.model_fields[REMOVALS.get(attack).strength].default)
        grid = {attack: [parse_value(s.strip()) for s in strength.split(",")] if strength else [default]}
    removals = []  # (name, strength label, removal), all checked before anything runs
    thefts: list[dict[str, Any]] = []  # extraction attacks' parameters
    for name, values in grid.items():
        for value in values:
            if name in EXTRACTIONS:
                thefts.append({**settings, "name": name, EXTRACTION_STRENGTH: value})
                continue
            cls = REMOVALS.get(name)
            try:
                removal = build_removal({**settings, "name": name, cls.strength: value})
            except ValidationError as exc:
                raise bad_input(f"--attack {name}: {validation_lines(exc)[0]}") from None
            removals.append((name, f"{cls.strength}={value}", removal))
    owner, scenario, dataset, net = _load(run, model)
    device = next(net.parameters()).device
    context = RemovalContext(dataset, lambda: template_model(scenario, dataset), owner.scheme,
                             owner.config.embedding, seed)
    count = scenario.data.test_samples or len(dataset.test_y)
    test_x, test_y = dataset.test_x[:count], dataset.test_y[:count]
    held = min(DEFAULT_HOLDOUT, count // 2) if holdout is None else holdout
    # One section per attack, so that each copy is the one `fedsec extract --attack NAME` makes.
    configs = [extraction_config([spec], held) for spec in thefts]
    if configs:
        check_holdout(held, count)

    def row(name: str, value: Any, attacked: nn.Module, ma: float | None = None) -> str:
        ma = evaluate(attacked, test_x, test_y, 1000, device).accuracy if ma is None else ma
        v = owner.verify(attacked)
        return (f"| {name} | {value} | {ma:.2%} | {v.statistic_name} {v.statistic:.3f} | {v.p_value:.2e} "
                f"| {'yes' if v.verified else 'no'} |")

    lines = ["| attack | strength | MA | statistic | p-value | verified |", "|---|---|---|---|---|---|",
             row("none", "–", net)]
    typer.echo("\n".join(lines))
    for name, label, removal in removals:
        try:
            attacked = removal(copy.deepcopy(net), context)
        except ValidationError as exc:  # a parameter the removal hands on to a bounded training setting
            raise bad_input(f"--attack {name}: {validation_lines(exc)[0]}") from None
        lines.append(row(name, label, attacked))
        typer.echo(lines[-1])
    for config in configs:
        (stolen,), (record,), _ = steal_copies(run, scenario, dataset, net, config, owner, device)
        (spec,) = config.attacks
        lines.append(row(f"{spec.name} (extracted)", f"{EXTRACTION_STRENGTH}={spec.budget}", stolen,
                         record["accuracy"]))
        typer.echo(lines[-1])
    if configs:
        note = (f"\nExtracted rows: a copy trained on the model's answers to {held:,} test images; its MA "
                f"is on the other {count - held:,}, the other rows' on all {count:,}.")
        lines.append(note)
        typer.echo(note)
    target = run / ("robustness.md" if all_ else f"robustness-{attack}.md")
    write_atomic(target, "\n".join(lines) + "\n")
    typer.echo(f"saved {target}")


def watermark_plot(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (one line each).")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("watermark.png"),
) -> None:
    """Plot the watermark statistic and its evidence (bits) per round for several runs."""
    from fedsec.experiments.report import read_rounds
    from fedsec.watermark.plots import plot_watermark

    records = {}
    bound = None
    for path in runs:
        try:
            rows = read_rounds(RunDirectory(path))
        except ValueError as exc:  # a corrupt metrics.jsonl, named in the message
            raise bad_input(str(exc)) from None
        if not any("wm_bits" in r for r in rows):
            raise bad_input(f"{path}: no watermark records in metrics.jsonl")
        records[path.name] = rows
        try:
            scenario = load_scenario(path / "scenario.yaml")
        except ScenarioError:
            continue
        bound = scenario.watermark.false_alarm if scenario.watermark else bound
    plot_watermark(records, out, bound)
    typer.echo(f"wrote {out}")
