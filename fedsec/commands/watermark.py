"""``fedsec verify``, ``fedsec attack-watermark`` and ``fedsec watermark-plot`` (typer functions,
registered in :mod:`fedsec.cli`), and how they load a watermarked run."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import torch
import typer
from torch import nn

from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.models import build_model
from fedsec.results import MODEL_FILE, SCENARIO_FILE, RunDirectory, write_atomic
from fedsec.scenario import Scenario, ScenarioError, load_scenario, parse_value, validation_lines
from fedsec.watermark.owner import OWNER_DIR, SECRETS_FILE, WatermarkOwner, template_model

EXIT_VERIFIED, EXIT_NOT_VERIFIED, EXIT_BAD_INPUT = 0, 1, 2

# The grid of `attack-watermark --all`: attack -> strengths of its `strength` parameter.
DEFAULT_GRID: dict[str, list[Any]] = {
    "finetune": [1, 2, 5, 10],
    "prune": [0.1, 0.3, 0.5, 0.7, 0.9],
    "quantize": ["int8", "fp16"],
    "overwrite": [50, 200],
    "distill": [5],
}

RunOption = Annotated[Path, typer.Option("--run", help="Run directory of a watermarked run.")]
ModelOption = Annotated[Path | None, typer.Option("--model", help="Model file to check (default: the run's model.pt).")]


def bad_input(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` options as a mapping (values parsed as YAML scalars); a one-line exit 2
    for an item without ``=``."""
    settings: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise bad_input(f"--set {item}: expected key=value")
        settings[key.strip()] = parse_value(value)
    return settings


T = TypeVar("T")


def read_or_exit(load: Callable[[], T], source: Path, torch_file: Path) -> T:
    """``load()``, or a one-line exit 2 naming ``source`` (``torch_file`` when that file is not a
    weights-only PyTorch archive) when what it reads is missing, corrupt or of the wrong shape."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickles it refuses to load
            return load()
    except (pickle.UnpicklingError, EOFError):
        raise bad_input(f"{torch_file}: empty, truncated, or not a weights-only PyTorch file "
                         "(nothing in it was run)") from None
    except (ValueError, OSError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise bad_input(text if text.startswith(str(source)) else f"{source}: {text}") from None


def load_owner(run_dir: Path, device: torch.device) -> tuple[WatermarkOwner, Scenario, ImageDataset]:
    """The owner of a finished (or running) run directory, with its scenario and dataset.

    ValueError when the run has no watermark or its secrets are missing.
    """
    try:
        scenario = load_scenario(run_dir / SCENARIO_FILE)
    except ScenarioError as exc:
        raise ValueError(exc.lines[0]) from None
    if scenario.watermark is None:
        raise ValueError(f"{run_dir}: the scenario has no watermark section")
    if not (run_dir / OWNER_DIR / SECRETS_FILE).exists():
        raise ValueError(f"{run_dir}: no {OWNER_DIR}/{SECRETS_FILE} (not a watermarked run, or not readable)")
    dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    return WatermarkOwner(scenario.watermark, scenario, dataset, device, run_dir / OWNER_DIR), scenario, dataset


def load_model(path: Path, dataset: ImageDataset, device: torch.device) -> nn.Module:
    """A model file written by a run (``{"model", "dataset", "state_dict"}``) or by a removal attack,
    built with the dataset's shape. ValueError when it does not fit."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(payload["model"], dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std)
        model.load_state_dict(payload["state_dict"])
    except (OSError, KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a model file of this run ({type(exc).__name__}: {str(exc)[:120]})") from None
    return model.to(device).eval()


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


def attack_watermark(
    run: RunOption,
    attack: Annotated[str | None, typer.Option(help="Removal attack: distill, finetune, overwrite, prune, quantize.")] = None,
    strength: Annotated[str | None, typer.Option(help="Comma-separated values of the attack's strength parameter.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Other attack parameter: key=value (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run the default grid of every attack.")] = False,
    model: ModelOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the attacker's data and randomness.")] = 0,
) -> None:
    """Attack the watermarked model and print a Markdown robustness table (also saved in the run dir)."""
    from pydantic import ValidationError

    from fedsec.training import evaluate
    from fedsec.watermark.removal import REMOVALS, RemovalContext, build_removal

    if all_ == (attack is not None):
        raise bad_input("give --attack (with --strength) or --all")
    extra = parse_settings(set_)
    if all_:
        grid = DEFAULT_GRID
    else:
        if attack not in REMOVALS:
            raise bad_input(f"--attack {attack}: not one of {', '.join(REMOVALS.names())}")
        default = REMOVALS.get(attack).Params.model_fields[REMOVALS.get(attack).strength].default
        grid = {attack: [parse_value(s.strip()) for s in strength.split(",")] if strength else [default]}
    removals = []  # (name, strength label, removal), all checked before anything runs
    for name, values in grid.items():
        cls = REMOVALS.get(name)
        for value in values:
            try:
                removal = build_removal({**(extra if not all_ else {}), "name": name, cls.strength: value})
            except ValidationError as exc:
                raise bad_input(f"--attack {name}: {validation_lines(exc)[0]}") from None
            removals.append((name, f"{cls.strength}={value}", removal))
    owner, scenario, dataset, net = _load(run, model)
    device = next(net.parameters()).device
    context = RemovalContext(dataset, lambda: template_model(scenario, dataset), owner.scheme,
                             owner.config.embedding, seed)
    count = scenario.data.test_samples or len(dataset.test_y)
    test_x, test_y = dataset.test_x[:count], dataset.test_y[:count]

    def row(name: str, value: Any, attacked: Any) -> str:
        ma = evaluate(attacked, test_x, test_y, 1000, device).accuracy
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
        line = row(name, label, attacked)
        typer.echo(line)
        lines.append(line)
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
