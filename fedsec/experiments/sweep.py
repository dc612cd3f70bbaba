"""Plan and run a sweep: one run directory per cell, named by a hash of its resolved scenario.

Layout of a sweep directory::

    sweep.yaml            the sweep as run (base, overrides, axes with labels, seeds)
    cells/<label>-<hash>/ one run directory per cell (+ cell.json, run.log)
    sweep.csv             one row per cell (and seed)
    sweep_ci.csv, sweep.md  one row per grid combination: mean and 95% confidence interval over seeds

A cell is finished when its ``summary.json`` exists. Any other cell directory is incomplete and
is run again from scratch; a finished one is never run again, so an interrupted sweep resumes by
running the same command. Changing the base scenario or an override changes the hash, so the
affected cells run again in new directories. A cell another sweep directory finished with the same
hash is copied instead of run (``fedsec sweep --reuse DIR``). A directory holds one grid: a sweep
over other keys, or with a label standing for another value, is refused there. ``fedsec sweep
--only key=label,...`` runs a chosen subset of the cells and leaves the others as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedsec.experiments.grid import Cell, SweepSpec, cell_mapping, cells
from fedsec.fl.processes import stop_tree
from fedsec.results import SCENARIO_FILE, SUMMARY_FILE, write_atomic
from fedsec.scenario import Scenario, ScenarioError, parse_scenario, read_yaml, to_yaml

SWEEP_FILE = "sweep.yaml"
CELLS_DIR = "cells"
CELL_FILE = "cell.json"
LOG_FILE = "run.log"


@dataclass(frozen=True)
class PlannedCell:
    """A validated cell: its grid values, its resolved scenario and its run directory."""

    cell: Cell
    scenario: Scenario
    path: Path

    @property
    def finished(self) -> bool:
        """Whether a previous invocation completed this cell."""
        return (self.path / SUMMARY_FILE).exists()


def scenario_hash(scenario: Scenario) -> str:
    """8 hex digits identifying what a run computes: the resolved scenario without its name,
    output directory, trackers and the server's reply polling interval (which do not change the
    results). Absent optional sections and
    unset values are left out, so a section added to the scenario schema later keeps existing
    cells finished; a changed default value changes the hash (the cell computes something else)."""
    content = scenario.model_dump(mode="json", exclude={"name": True, "output": {"dir", "trackers"},
                                                        "server": {"reply_poll_s"}}, exclude_none=True)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "cell"


def cell_name(cell: Cell) -> str:
    """Readable part of a cell's directory name: its labels and seed."""
    parts = [*cell.labels, *([f"s{cell.seed}"] if cell.seed is not None else [])]
    return _slug("_".join(parts))


def plan(spec: SweepSpec, out: Path) -> list[PlannedCell]:
    """Resolve and validate every cell; ScenarioError listing each distinct problem, named by
    the first cell that has it, before anything runs."""
    base = read_yaml(spec.base)
    planned: list[PlannedCell] = []
    problems: dict[str, str] = {}
    for cell in cells(spec):
        where = ", ".join(f"{axis.key}={label}" for axis, label in zip(spec.axes, cell.labels, strict=True))
        try:
            raw = cell_mapping(base, spec, cell)
            name = cell_name(cell)
            raw["name"] = _slug(f"{raw.get('name', spec.name)}-{name}")
            scenario = parse_scenario(raw)
        except ValueError as exc:
            problems.setdefault(str(exc), where)
            continue
        except ScenarioError as exc:
            for line in exc.lines:
                problems.setdefault(line, where)
            continue
        path = out / CELLS_DIR / f"{name}-{scenario_hash(scenario)}"
        grid = {axis.key: label for axis, label in zip(spec.axes, cell.labels, strict=True)}
        trackers = [tracker.for_sweep(out, spec.name, grid) for tracker in scenario.output.trackers]
        output = scenario.output.model_copy(update={"dir": str(path.parent), "trackers": trackers})
        planned.append(PlannedCell(cell, scenario.model_copy(update={"output": output}), path))
    if problems:
        raise ScenarioError([f"{spec.base} (cell {where}): {line}" for line, where in problems.items()])
    return planned


def select(planned: list[PlannedCell], spec: SweepSpec, only: Sequence[str]) -> list[PlannedCell]:
    """The cells that meet every condition of ``only`` (``fedsec sweep --only``), in plan order.

    ``only``: conditions ``key=label1,label2,...``; ``key`` is a grid key (labels as in the sweep
    file, e.g. ``attack=dba,ipm``) or ``seed`` (``seed=1,2``). A cell meets a condition when its
    label (or seed) is one of those listed. ScenarioError for an unknown key or label.
    """
    index = {axis.key: i for i, axis in enumerate(spec.axes)}
    known = {**{axis.key: set(axis.labels) for axis in spec.axes}, "seed": {str(s) for s in spec.seeds or ()}}
    conditions: list[tuple[str, set[str]]] = []
    for text in only:
        key, _, values = (part.strip() for part in text.partition("="))
        labels = {label.strip() for label in values.split(",") if label.strip()}
        if key not in known:
            raise ScenarioError([f"--only {text}: expected key=label1,label2,... with key one of {', '.join(known)}"])
        if not labels or not labels <= known[key]:
            raise ScenarioError([f"--only {text}: unknown {key} {', '.join(sorted(labels - known[key])) or '(none)'} "
                                 f"(known: {', '.join(sorted(known[key]))})"])
        conditions.append((key, labels))

    def label(p: PlannedCell, key: str) -> str:
        return str(p.cell.seed) if key == "seed" else p.cell.labels[index[key]]

    return [p for p in planned if all(label(p, key) in labels for key, labels in conditions)]


def write_sweep_file(spec: SweepSpec, out: Path) -> None:
    """Record the sweep as run, so that ``fedsec report`` and ``fedsec game`` can read it back."""
    document = {
        "name": spec.name,
        "base": str(spec.base),
        "set": dict(spec.overrides),
        "grid": {axis.key: dict(zip(axis.labels, axis.values, strict=True)) for axis in spec.axes},
        "seeds": list(spec.seeds) if spec.seeds is not None else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / SWEEP_FILE, yaml.safe_dump(document, sort_keys=False))


def _plain(value: Any) -> Any:
    """A grid value as sweep.yaml holds it (tuples as lists...), to compare with one read back."""
    return yaml.safe_load(yaml.safe_dump(value))


def grid_problem(spec: SweepSpec, out: Path) -> str | None:
    """Why ``out`` cannot take this sweep: its sweep.yaml records other grid keys, or a label
    there that stands for another value. None for a new directory or the same grid (more values
    or seeds may be added)."""
    if not (out / SWEEP_FILE).is_file():
        return None
    recorded = (yaml.safe_load((out / SWEEP_FILE).read_text()) or {}).get("grid") or {}
    grid = {axis.key: dict(zip(axis.labels, axis.values, strict=True)) for axis in spec.axes}
    advice = "give another --out, or remove the directory"
    if list(recorded) != list(grid):
        return (f"{out}: made from another grid (keys {', '.join(recorded) or 'none'}; this sweep: "
                f"{', '.join(grid)}); {advice}")
    changed = [f"{key}={label}" for key, values in grid.items() for label, value in values.items()
               if label in recorded[key] and _plain(recorded[key][label]) != _plain(value)]
    if changed:
        return f"{out}: made from another grid ({', '.join(changed)} stood for other values there); {advice}"
    return None


def reusable_cells(planned: list[PlannedCell], directories: list[Path]) -> dict[Path, Path]:
    """For each unfinished cell, a finished cell of another sweep directory that computed the same
    thing: same scenario hash, checked again on its scenario.yaml. Maps this sweep's cell path to
    the finished one; ScenarioError for a directory that is not a sweep directory."""
    wanted = {p.path.name.rsplit("-", 1)[-1]: p for p in planned if not p.finished}
    found: dict[Path, Path] = {}
    for directory in directories:
        if not (directory / CELLS_DIR).is_dir():
            raise ScenarioError([f"--reuse {directory}: not a sweep directory (no {CELLS_DIR}/ folder)"])
        for source in sorted((directory / CELLS_DIR).iterdir()):
            p = wanted.get(source.name.rsplit("-", 1)[-1])
            if p is None or p.path in found or not (source / SUMMARY_FILE).is_file():
                continue
            try:
                same = scenario_hash(parse_scenario(read_yaml(source / SCENARIO_FILE))) == scenario_hash(p.scenario)
            except ScenarioError:  # written by an older schema: not comparable
                continue
            if same:
                found[p.path] = source
    return found


def copy_finished(planned: PlannedCell, spec: SweepSpec, source: Path) -> None:
    """``source``'s run directory as this cell's, with this sweep's scenario and grid labels;
    the summary is copied last, so an interrupted copy is an unfinished cell."""
    if planned.path.exists():
        shutil.rmtree(planned.path)
    shutil.copytree(source, planned.path, ignore=shutil.ignore_patterns(SUMMARY_FILE))
    prepare_files(planned, spec, reused_from=source)
    shutil.copy2(source / SUMMARY_FILE, planned.path / SUMMARY_FILE)


def prepare(planned: PlannedCell, spec: SweepSpec) -> None:
    """An empty run directory holding the cell's scenario and grid values (an incomplete
    earlier attempt is discarded)."""
    if planned.path.exists():
        shutil.rmtree(planned.path)
    planned.path.mkdir(parents=True)
    prepare_files(planned, spec)


def prepare_files(planned: PlannedCell, spec: SweepSpec, reused_from: Path | None = None) -> None:
    """The cell's scenario.yaml and cell.json (grid labels, seed, and the sweep cell it was
    copied from, if any)."""
    write_atomic(planned.path / SCENARIO_FILE, to_yaml(planned.scenario))
    cell: dict[str, Any] = {
        "grid": {axis.key: label for axis, label in zip(spec.axes, planned.cell.labels, strict=True)},
        "seed": planned.scenario.seed}
    if reused_from is not None:
        cell["reused_from"] = str(reused_from)
    write_atomic(planned.path / CELL_FILE, json.dumps(cell, indent=2) + "\n")


def subprocess_environment() -> dict[str, str]:
    """Each cell starts its own private Ray instance (never one found on the machine), on
    loopback, in its own session directory."""
    env = dict(os.environ)
    env.setdefault("RAY_ADDRESS", "local")
    return env


TIMED_OUT = 124
"""Exit status recorded for a cell stopped at the time limit (as coreutils' ``timeout``)."""
STOP_GRACE_S = 10.0
"""Seconds a timed-out cell's processes get between SIGTERM and SIGKILL."""


def run_logged(command: list[str], log: Path, env: Mapping[str, str], timeout_s: float | None) -> int:
    """Run ``command`` with its output in ``log``; its exit status, or :data:`TIMED_OUT` when it
    was still running after ``timeout_s`` seconds (None: no limit): it is then stopped with every
    process it started, and the log says so on its last line."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(env))
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_tree(process.pid, STOP_GRACE_S)
        process.wait()
        with open(log, "ab") as out:
            out.write(f"\nstopped by fedsec sweep: still running after {timeout_s:g} s (--cell-timeout)\n".encode())
        return TIMED_OUT


def run_in_subprocess(planned: PlannedCell, timeout_s: float | None = None) -> int:
    """Run one prepared cell with ``python -m fedsec.experiments.cell``, output in run.log, for
    at most ``timeout_s`` seconds (None: no limit). Returns the exit status."""
    return run_logged([sys.executable, "-m", "fedsec.experiments.cell", str(planned.path)],
                      planned.path / LOG_FILE, subprocess_environment(), timeout_s)


@dataclass
class SweepOutcome:
    """What one invocation did: cells run, skipped (already finished), failed, and copied from
    another sweep directory."""

    ran: list[PlannedCell]
    skipped: list[PlannedCell]
    failed: list[PlannedCell]
    reused: list[PlannedCell] = field(default_factory=list)


def default_jobs() -> int:
    """Cells run at once by default: one per 4 cores (each simulation already uses every core
    through Ray; running a few overlaps their start-up and evaluation), at most 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def run_sweep(
    spec: SweepSpec,
    planned: list[PlannedCell],
    jobs: int = 1,
    runner: Callable[[PlannedCell], int] = run_in_subprocess,
    on_event: Callable[[str, PlannedCell, float], None] | None = None,
    reuse: Mapping[Path, Path] | None = None,
) -> SweepOutcome:
    """Copy the unfinished cells found in ``reuse`` (this sweep's cell path -> a finished cell of
    another sweep, see :func:`reusable_cells`), then run every other unfinished cell, ``jobs`` at
    a time. ``on_event(kind, cell, seconds)`` is told "reused", "start", "done" and "failed"
    (seconds: the cell's wall time)."""
    outcome = SweepOutcome([], [p for p in planned if p.finished], [])
    for p in planned:
        if not p.finished and p.path in (reuse or {}):
            copy_finished(p, spec, reuse[p.path])
            outcome.reused.append(p)
            if on_event:
                on_event("reused", p, 0.0)
    todo = [p for p in planned if not p.finished]

    def one(p: PlannedCell) -> None:
        prepare(p, spec)
        if on_event:
            on_event("start", p, 0.0)
        started = time.perf_counter()
        status = runner(p)
        ok = status == 0 and p.finished
        (outcome.ran if ok else outcome.failed).append(p)
        if on_event:
            on_event("done" if ok else "failed", p, time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, todo))
    return outcome


def summary_of(planned: PlannedCell) -> dict[str, Any] | None:
    """The cell's summary.json, or None when it has not finished."""
    path = planned.path / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None
