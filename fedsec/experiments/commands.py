"""The ``fedsec sweep``, ``fedsec report`` and ``fedsec game`` commands (registered in cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedsec.scenario import ScenarioError

EXIT_BAD_INPUT = 2
EXIT_CELLS_FAILED = 1


def _fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        typer.echo(line, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _spec_from_arguments(target: Path, grid: list[str], set_: list[str], seeds: str | None):  # noqa: ANN202
    """The sweep described by a sweep file or a scenario file, plus command-line axes/overrides."""
    from dataclasses import replace

    from fedsec.experiments.grid import (
        SweepSpec,
        cli_overrides,
        is_sweep_file,
        load_sweep_file,
        parse_grid_option,
    )
    from fedsec.scenario import read_yaml

    raw = read_yaml(target)
    if is_sweep_file(raw):
        spec = load_sweep_file(target)
    else:
        spec = SweepSpec(base=target, name=str(raw.get("name", target.stem)), overrides=(), axes=(), seeds=None)
    extra_axes = {axis.key: axis for axis in (parse_grid_option(text) for text in grid)}
    axes = tuple(a for a in spec.axes if a.key not in extra_axes) + tuple(extra_axes.values())
    if not axes:
        raise ScenarioError([f"{target}: no grid (give --grid key=v1,v2 or a sweep file with a grid: section)"])
    overrides = spec.overrides + cli_overrides(set_)
    seed_values = spec.seeds
    if seeds is not None:
        try:
            seed_values = tuple(int(s) for s in seeds.split(","))
        except ValueError:
            raise ScenarioError([f"--seeds {seeds}: expected comma-separated integers"]) from None
    return replace(spec, axes=axes, overrides=overrides, seeds=seed_values)


def sweep(
    target: Annotated[Path, typer.Argument(help="Sweep file (base:, grid:, set:, seeds:) or scenario file.")],
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="Axis: key.path=v1,v2,... (YAML values; repeatable).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override for every cell: key.path=value (repeatable).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds for every cell, e.g. 0,1,2.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Sweep directory (default: <output.dir>/sweeps/<name>).")] = None,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Cells run at once (default: 1 per 4 cores, at least 1).")] = None,
    dry_run: Annotated[bool, typer.Option(help="List the cells and their state; run nothing.")] = False,
    report: Annotated[bool, typer.Option(help="Write report.html when the sweep ends.")] = True,
) -> None:
    """Run every combination of grid values (and seeds); finished cells are never run again."""
    from fedsec.experiments.grid import set_path
    from fedsec.experiments.sweep import default_jobs, plan, run_sweep, write_sweep_file
    from fedsec.experiments.table import CSV_FILE, MARKDOWN_FILE, write_tables
    from fedsec.scenario import read_yaml

    try:
        spec = _spec_from_arguments(target, grid or [], set_ or [], seeds)
        if out is None:
            base = read_yaml(spec.base)
            for key, value in spec.overrides:
                set_path(base, key, value)
            out = Path(str((base.get("output") or {}).get("dir", "runs"))) / "sweeps" / spec.name
        planned = plan(spec, out)
    except ScenarioError as exc:
        raise _fail(exc.lines) from None
    except ValueError as exc:  # a fixed override indexing past the end of a list
        raise _fail([str(exc)]) from None

    keys = [axis.key for axis in spec.axes]
    todo = [p for p in planned if not p.finished]
    jobs = jobs or default_jobs()
    typer.echo(f"sweep {spec.name}: {len(planned)} cells, {len(planned) - len(todo)} finished, "
               f"{len(todo)} to run ({jobs} at a time) in {out}")
    if dry_run:
        for p in planned:
            typer.echo(f"  {'finished' if p.finished else 'to run  '}  {p.path.name}")
        return

    write_sweep_file(spec, out)
    done = [0]

    def progress(kind: str, p, seconds: float) -> None:  # noqa: ANN001
        if kind == "start":
            typer.echo(f"running {p.path.name}")
            return
        done[0] += 1
        state = f"done in {seconds:.1f} s" if kind == "done" else f"FAILED (see {p.path / 'run.log'})"
        typer.echo(f"[{done[0]}/{len(todo)}] {p.path.name}: {state}")

    outcome = run_sweep(spec, planned, jobs=jobs, on_event=progress)
    rows = write_tables(keys, planned, out)
    typer.echo((out / MARKDOWN_FILE).read_text(), nl=False)
    typer.echo(f"wrote {out / CSV_FILE} and {out / MARKDOWN_FILE}")
    if report and any(row["status"] == "finished" for row in rows):
        from fedsec.experiments.report import write_report

        typer.echo(f"wrote {write_report(out)}")
    if outcome.failed:
        typer.echo(f"{len(outcome.failed)} cells failed; run the same command again to retry them", err=True)
        raise typer.Exit(EXIT_CELLS_FAILED)


def report(
    path: Annotated[Path, typer.Argument(help="Run directory or sweep directory.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default: PATH/report.html).")] = None,
) -> None:
    """A self-contained HTML report (plots embedded) of a run or a sweep."""
    from fedsec.experiments.report import write_report

    try:
        typer.echo(f"wrote {write_report(path, out)}")
    except (OSError, ValueError) as exc:  # a missing, corrupt or unwritable file, named in the message
        raise _fail([str(exc)]) from None


def _keys(option: str, text: str, grid: dict[str, list[str]]) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    known = ", ".join(grid)
    if not keys:
        raise ScenarioError([f"--{option}: give one or more grid keys, comma-separated (the grid keys: {known})"])
    if unknown := [k for k in keys if k not in grid]:
        raise ScenarioError([f"--{option} {text}: {', '.join(unknown)} not among the grid keys ({known})"])
    return keys


def game(
    path: Annotated[Path, typer.Argument(help="Sweep directory.")],
    attacker: Annotated[str, typer.Option(help="Grid key(s) forming the attacker's strategies, comma-separated.")],
    defender: Annotated[str, typer.Option(help="Grid key(s) forming the defender's strategies, comma-separated.")],
    ma_min: Annotated[float, typer.Option(help="An attack pays only while the model's MA exceeds this (0..1).")] = 0.8,
    where: Annotated[list[str] | None, typer.Option(
        help="Keep only cells with this grid label: key=label (repeatable).")] = None,
) -> None:
    """Zero-sum attacker/defender game: payoff ASR x 1[MA > MA_min] averaged over seeds, mixed
    Nash equilibrium by linear programming; saves game.json in the sweep directory."""
    from fedsec.experiments.game import payoff_matrix, solve_zero_sum
    from fedsec.experiments.report import GAME_FILE, read_sweep_results
    from fedsec.results import write_atomic

    if not 0 <= ma_min <= 1:  # also refuses nan
        percent = f" (write {ma_min / 100:g} for {ma_min:g}%)" if 1 < ma_min <= 100 else ""
        raise _fail([f"--ma-min {ma_min:g}: expected an accuracy between 0 and 1{percent}"])
    try:
        results = read_sweep_results(path)
        attacker_keys = _keys("attacker", attacker, results.grid)
        defender_keys = _keys("defender", defender, results.grid)
        rows = results.rows
        for text in where or []:
            key, _, label = text.partition("=")
            if key not in results.grid or label not in results.grid[key]:
                raise ScenarioError([f"--where {text}: expected key=label with a grid key and one of its labels"])
            rows = [r for r in rows if r[key] == label]
        varying = [k for k in results.grid if k not in attacker_keys + defender_keys
                   and len({r[k] for r in rows}) > 1]
        if varying:
            raise ScenarioError([f"grid keys {varying} vary but belong to neither player: add them to --attacker "
                                 "or --defender, or fix them with --where key=label"])
        matrix = payoff_matrix(rows, attacker_keys, defender_keys, ma_min)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail([str(exc)]) from None
    except ScenarioError as exc:
        raise _fail(exc.lines) from None

    if not matrix.payoff.any():
        typer.echo(f"warning: every payoff is 0 (no cell has an ASR above 0 with MA above {ma_min:g}), so every "
                   "strategy is optimal and the mixed strategies below mean nothing", err=True)
    equilibrium = solve_zero_sum(matrix.payoff)
    typer.echo(f"payoff: attacker utility ASR x 1[MA > {ma_min}] (%), mean over seeds")
    width = max(len(a) for a in matrix.attacker_labels)
    typer.echo(" " * width + " | " + " | ".join(matrix.defender_labels))
    for label, values in zip(matrix.attacker_labels, matrix.payoff, strict=True):
        typer.echo(f"{label:<{width}} | " + " | ".join(f"{100 * v:.1f}" for v in values))
    typer.echo(f"attacker ({','.join(attacker_keys)}) mixed strategy:")
    for label, p in zip(matrix.attacker_labels, equilibrium.row, strict=True):
        typer.echo(f"  {p:.3f}  {label}")
    typer.echo(f"defender ({','.join(defender_keys)}) mixed strategy:")
    for label, p in zip(matrix.defender_labels, equilibrium.column, strict=True):
        typer.echo(f"  {p:.3f}  {label}")
    typer.echo(f"game value (attacker's expected utility): {equilibrium.value:.4f}")
    document = {
        "attacker_keys": attacker_keys, "defender_keys": defender_keys, "ma_min": ma_min, "where": where or [],
        "attacker_labels": matrix.attacker_labels, "defender_labels": matrix.defender_labels,
        "payoff": matrix.payoff.tolist(), "runs": matrix.runs.astype(int).tolist(),
        "attacker_strategy": equilibrium.row.tolist(), "defender_strategy": equilibrium.column.tolist(),
        "value": equilibrium.value,
    }
    write_atomic(path / GAME_FILE, json.dumps(document, indent=2) + "\n")
    typer.echo(f"wrote {path / GAME_FILE} (fedsec report {path} shows it)")
