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
    reuse: Annotated[list[Path] | None, typer.Option(
        help="Another sweep directory: its finished cells identical to a cell here (same scenario hash) are "
        "copied instead of run (repeatable).")] = None,
    cell_timeout: Annotated[float | None, typer.Option(
        min=1, help="Seconds a cell may run: one still running then is stopped with every process it started "
        "and counted as failed; the next call runs it again (default: no limit).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Run only the cells whose grid label (or seed) is one of these: key=label1,label2,... "
        "(e.g. attack=dba, seed=1,2; repeatable, a cell meets every one); the others are left as they are.")] = None,
) -> None:
    """Run every combination of grid values (and seeds); finished cells are never run again, and a
    directory made from another grid is refused."""
    from functools import partial

    from fedsec.experiments.grid import set_path
    from fedsec.experiments.sweep import (
        default_jobs,
        grid_problem,
        plan,
        reusable_cells,
        run_in_subprocess,
        run_sweep,
        select,
        write_sweep_file,
    )
    from fedsec.experiments.table import CSV_FILE, MARKDOWN_FILE, write_tables
    from fedsec.scenario import read_yaml

    try:
        spec = _spec_from_arguments(target, grid or [], set_ or [], seeds)
        if out is None:
            base = read_yaml(spec.base)
            for key, value in spec.overrides:
                set_path(base, key, value)
            out = Path(str((base.get("output") or {}).get("dir", "runs"))) / "sweeps" / spec.name
        if problem := grid_problem(spec, out):
            raise ScenarioError([problem])
        planned = plan(spec, out)
        chosen = select(planned, spec, only or [])
        reused = reusable_cells(chosen, reuse or [])
    except ScenarioError as exc:
        raise _fail(exc.lines) from None
    except ValueError as exc:  # a fixed override indexing past the end of a list
        raise _fail([str(exc)]) from None

    keys = [axis.key for axis in spec.axes]
    todo = [p for p in chosen if not p.finished and p.path not in reused]
    jobs = jobs or default_jobs()
    copied = f"{len(reused)} to copy from --reuse, " if reuse else ""
    left = f"{len(planned) - len(chosen)} not chosen by --only, " if only else ""
    typer.echo(f"sweep {spec.name}: {len(planned)} cells, {len([p for p in planned if p.finished])} finished, "
               f"{left}{copied}{len(todo)} to run ({jobs} at a time) in {out}")
    if dry_run:
        chosen_paths = {p.path for p in chosen}
        for p in planned:
            state = ("finished" if p.finished else "reuse   " if p.path in reused
                     else "to run  " if p.path in chosen_paths else "left    ")
            typer.echo(f"  {state}  {p.path.name}")
        return

    write_sweep_file(spec, out)
    done = [0]

    def progress(kind: str, p, seconds: float) -> None:  # noqa: ANN001
        if kind in ("start", "reused"):
            typer.echo(f"running {p.path.name}" if kind == "start" else f"copied {p.path.name} from {reused[p.path]}")
            return
        done[0] += 1
        state = f"done in {seconds:.1f} s" if kind == "done" else f"FAILED (see {p.path / 'run.log'})"
        typer.echo(f"[{done[0]}/{len(todo)}] {p.path.name}: {state}")

    outcome = run_sweep(spec, chosen, jobs=jobs, runner=partial(run_in_subprocess, timeout_s=cell_timeout),
                        on_event=progress, reuse=reused)
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
    paths: Annotated[list[Path], typer.Argument(help="Run directory or sweep directory; or several run directories "
                                                     "to compare.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default: PATH/report.html; several runs: "
                                                  "report.html here).")] = None,
) -> None:
    """A self-contained, interactive HTML report (works offline) of a run, a sweep, or several
    runs overlaid."""
    from fedsec.experiments.report import REPORT_FILE, write_report

    first, *more = paths
    try:
        typer.echo(f"wrote {write_report(first, out or (Path(REPORT_FILE) if more else None), more)}")
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


GAME_AXES = ("fedsec game needs two sets of grid keys: --attacker KEYS, whose labels form the attacker's "
             "strategies (e.g. attack, attack.fraction), and --defender KEYS, the defender's (e.g. defenses); "
             "every other key that varies is fixed with --where key=label")


def game(
    path: Annotated[Path, typer.Argument(help="Sweep directory.")],
    attacker: Annotated[str | None, typer.Option(
        help="Grid key(s) whose labels form the attacker's strategies (rows), comma-separated.")] = None,
    defender: Annotated[str | None, typer.Option(
        help="Grid key(s) whose labels form the defender's strategies (columns), comma-separated.")] = None,
    ma_min: Annotated[float, typer.Option(help="An attack pays only while the model's MA exceeds this (0..1).")] = 0.8,
    where: Annotated[list[str] | None, typer.Option(
        help="Keep only cells with this grid label: key=label (repeatable).")] = None,
    poisoning_cost: Annotated[float, typer.Option(
        help="Cost-aware game: the attacker's cost per unit of poisoning budget (share of clients malicious, "
        "0..1), in utility units (1 = 100% ASR).")] = 0.0,
    detection_cost: Annotated[float, typer.Option(
        help="Cost-aware game: the attacker's cost per unit of detection recall (0..1), in utility units.")] = 0.0,
    ma_cost: Annotated[float, typer.Option(
        help="Cost-aware game: the defender's cost per unit of MA lost below the best MA of the matrix (0..1), "
        "in utility units.")] = 0.0,
    compute_cost: Annotated[float, typer.Option(
        help="Cost-aware game: the defender's cost per second of aggregation time over the run, in utility "
        "units.")] = 0.0,
) -> None:
    """Zero-sum attacker/defender game: payoff ASR x 1[MA > MA_min] averaged over seeds (less the
    attacker's costs, plus the defender's, in the cost-aware game), mixed Nash equilibrium by linear
    programming; saves game-<axes>.json in the sweep directory."""
    import math

    from fedsec.experiments.game import TERMS, Costs, game_file, payoff_matrix, solve_zero_sum
    from fedsec.experiments.report import read_sweep_results
    from fedsec.results import write_atomic

    if not 0 <= ma_min <= 1:  # also refuses nan
        percent = f" (write {ma_min / 100:g} for {ma_min:g}%)" if 1 < ma_min <= 100 else ""
        raise _fail([f"--ma-min {ma_min:g}: expected an accuracy between 0 and 1{percent}"])
    costs = Costs(poisoning_cost, detection_cost, ma_cost, compute_cost)
    for option, value in (("poisoning-cost", poisoning_cost), ("detection-cost", detection_cost),
                          ("ma-cost", ma_cost), ("compute-cost", compute_cost)):
        if not (math.isfinite(value) and value >= 0):
            raise _fail([f"--{option} {value:g}: expected a cost of 0 or more (utility units)"])
    try:
        results = read_sweep_results(path)
        if attacker is None or defender is None:
            raise ScenarioError([f"{GAME_AXES} (this sweep's grid keys: {', '.join(results.grid)})"])
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
        matrix = payoff_matrix(rows, attacker_keys, defender_keys, ma_min, costs)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail([str(exc)]) from None
    except ScenarioError as exc:
        raise _fail(exc.lines) from None

    payoff = matrix.payoff
    if not payoff.any():
        typer.echo(f"warning: every payoff is 0 (no cell has an ASR above 0 with MA above {ma_min:g}), so every "
                   "strategy is optimal and the mixed strategies below mean nothing", err=True)
    elif payoff.max() - payoff.min() < 1e-12:
        typer.echo(f"warning: every payoff is {100 * payoff.flat[0]:.1f} %, a tie: every strategy is optimal and "
                   "the mixed strategies below mean nothing", err=True)
    equilibrium = solve_zero_sum(payoff)
    formula = f"ASR x 1[MA > {ma_min:g}]"
    if costs.any:
        formula += (f" - {poisoning_cost:g} x budget - {detection_cost:g} x recall + {ma_cost:g} x MA lost below "
                    f"{100 * (matrix.best_ma or 0):.1f} % + {compute_cost:g} x aggregation s")
    typer.echo(f"payoff (%): attacker utility {formula}, mean over seeds")
    width = max(len(a) for a in matrix.attacker_labels)
    typer.echo(" " * width + " | " + " | ".join(matrix.defender_labels))
    for label, values in zip(matrix.attacker_labels, payoff, strict=True):
        typer.echo(f"{label:<{width}} | " + " | ".join(f"{100 * v:.1f}" for v in values))
    typer.echo(f"attacker ({','.join(attacker_keys)}) mixed strategy:")
    for label, p in zip(matrix.attacker_labels, equilibrium.row, strict=True):
        typer.echo(f"  {p:.3f}  {label}")
    typer.echo(f"defender ({','.join(defender_keys)}) mixed strategy:")
    for label, p in zip(matrix.defender_labels, equilibrium.column, strict=True):
        typer.echo(f"  {p:.3f}  {label}")
    typer.echo(f"game value (attacker's expected utility): {equilibrium.value:.4f} ({100 * equilibrium.value:.1f} %)")
    document = {
        "attacker_keys": attacker_keys, "defender_keys": defender_keys, "ma_min": ma_min, "where": where or [],
        "costs": {"poisoning": poisoning_cost, "detection": detection_cost, "lost_ma": ma_cost,
                  "compute": compute_cost},
        "units": "utilities, payoffs and terms are fractions (1 = 100% ASR); costs in utility units per unit",
        "best_ma": matrix.best_ma,
        "attacker_labels": matrix.attacker_labels, "defender_labels": matrix.defender_labels,
        "payoff": payoff.tolist(), "terms": {term: matrix.terms[term].tolist() for term in TERMS},
        "runs": matrix.runs.astype(int).tolist(),
        "attacker_strategy": equilibrium.row.tolist(), "defender_strategy": equilibrium.column.tolist(),
        "value": equilibrium.value,
    }
    target = path / game_file(attacker_keys, defender_keys, where or [])
    write_atomic(target, json.dumps(document, indent=2) + "\n")
    typer.echo(f"wrote {target}")
