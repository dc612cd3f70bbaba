"""Plan and run a sweep: one run directory per cell, named by a hash of its resolved scenario.

Layout of a sweep directory::

    sweep.yaml            the sweep as run (base, overrides, axes with labels, seeds)
    cells/<label>-<hash>/ one run directory per cell (+ cell.json, run.log)
    sweep.csv             one row per cell (and seed)
    sweep_ci.csv, sweep.md  one row per grid combination: mean and 95% confidence interval over seeds

A cell is finished when its ``summary.json`` exists. Any other cell directory is incomplete and
is run again from scratch; a finished one is never run again, so an interrupted sweep resumes by
running the same command. Changing the base scenario or an override changes the hash, so the
affected cells run again in new directories.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedsec.experiments.grid import Cell, SweepSpec, cell_mapping, cells
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
    """8 hex digits identifying what a run computes: the resolved scenario without its name and
    output directory (which do not change the results). Absent optional sections and unset
    values are left out, so a section added to the scenario schema later keeps existing cells
    finished; a changed default value changes the hash (the cell computes something else)."""
    content = scenario.model_dump(mode="json", exclude={"name": True, "output": {"dir"}}, exclude_none=True)
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
        scenario = scenario.model_copy(update={"output": scenario.output.model_copy(update={"dir": str(path.parent)})})
        planned.append(PlannedCell(cell, scenario, path))
    if problems:
        raise ScenarioError([f"{spec.base} (cell {where}): {line}" for line, where in problems.items()])
    return planned


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


def prepare(planned: PlannedCell, spec: SweepSpec) -> None:
    """An empty run directory holding the cell's scenario and grid values (an incomplete
    earlier attempt is discarded)."""
    if planned.path.exists():
        shutil.rmtree(planned.path)
    planned.path.mkdir(parents=True)
    write_atomic(planned.path / SCENARIO_FILE, to_yaml(planned.scenario))
    cell = {"grid": {axis.key: label for axis, label in zip(spec.axes, planned.cell.labels, strict=True)},
            "seed": planned.scenario.seed}
    write_atomic(planned.path / CELL_FILE, json.dumps(cell, indent=2) + "\n")


def subprocess_environment() -> dict[str, str]:
    """Each cell starts its own private Ray instance (never one found on the machine), on
    loopback, in its own session directory."""
    env = dict(os.environ)
    env.setdefault("RAY_ADDRESS", "local")
    return env


def run_in_subprocess(planned: PlannedCell) -> int:
    """Run one prepared cell with ``python -m fedsec.experiments.cell``; output goes to run.log.
    Returns the exit status."""
    with open(planned.path / LOG_FILE, "wb") as log:
        return subprocess.run(
            [sys.executable, "-m", "fedsec.experiments.cell", str(planned.path)],
            stdout=log, stderr=subprocess.STDOUT, env=subprocess_environment(), check=False,
        ).returncode


@dataclass
class SweepOutcome:
    """What one invocation did: cells run, skipped (already finished) and failed."""

    ran: list[PlannedCell]
    skipped: list[PlannedCell]
    failed: list[PlannedCell]


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
) -> SweepOutcome:
    """Run every unfinished cell, ``jobs`` at a time. ``on_event(kind, cell, seconds)`` is told
    "start", "done" and "failed" (seconds: the cell's wall time)."""
    outcome = SweepOutcome([], [p for p in planned if p.finished], [])
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
