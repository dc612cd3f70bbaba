"""A sweep's results as rows: sweep.csv (one row per cell and seed) and a Markdown table
(one row per grid combination, mean ± std over seeds)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedsec.experiments.sweep import SWEEP_FILE, PlannedCell, summary_of
from fedsec.results import write_atomic

CSV_FILE = "sweep.csv"
MARKDOWN_FILE = "sweep.md"
METRICS = ("ma", "best_ma", "asr", "max_asr", "precision", "recall", "fpr", "f1", "rounds", "wall_s")
RATES = {"ma", "best_ma", "asr", "max_asr", "precision", "recall", "fpr", "f1"}
SHOWN = {"ma": "MA", "asr": "ASR", "recall": "recall", "fpr": "FPR", "wall_s": "time (s)"}
WATERMARK_PREFIX = "wm_"


def cell_rows(keys: Sequence[str], planned: list[PlannedCell], root: Path) -> list[dict[str, Any]]:
    """One row per cell: grid labels, seed, status, summary metrics, watermark keys, run path."""
    rows = []
    for p in planned:
        summary = summary_of(p) or {}
        row: dict[str, Any] = dict(zip(keys, p.cell.labels, strict=True))
        row["seed"] = p.scenario.seed
        row["status"] = "finished" if summary else "missing"
        row.update({key: summary.get(key) for key in METRICS})
        row.update({k: v for k, v in sorted(summary.items()) if k.startswith(WATERMARK_PREFIX)})
        row["run"] = str(p.path.relative_to(root))
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows as CSV; columns in first-seen order, empty for missing values."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    write_atomic(path, text.getvalue())


def _typed(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_csv(path: Path, text_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """sweep.csv back as rows: numbers and booleans typed, empty cells None, except in
    ``text_columns`` (the grid labels), which stay as written."""
    with open(path, newline="") as f:
        return [{k: v if k in text_columns else _typed(v) for k, v in row.items()} for row in csv.DictReader(f)]


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The metric columns of the Markdown table: MA, ASR, detection, watermark keys, time."""
    watermark = sorted({k for row in rows for k in row if k.startswith(WATERMARK_PREFIX)})
    return ["ma", "asr", "recall", "fpr", *watermark, "wall_s"]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def format_values(values: list[Any], key: str) -> str:
    """``mean ± std`` (rates in %); booleans as "k/n"; ``–`` when nothing was recorded."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return "–"
    if all(isinstance(v, bool) for v in present):
        return f"{sum(present)}/{len(present)}"
    if not all(isinstance(v, (int, float)) for v in present):
        return "/".join(sorted({str(v) for v in present}))
    mean, std = mean_std([float(v) for v in present])
    scale, digits = (100.0, 1) if key in RATES else (1.0, 3 if abs(mean) < 10 else 1)
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if std is not None else "")


def group_rows(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows of finished cells grouped by their grid labels (in first-seen order)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "finished":
            groups.setdefault(tuple(str(row[k]) for k in keys), []).append(row)
    return groups


def markdown_table(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    """One line per grid combination: labels, seeds run, mean ± std of each metric column."""
    columns = metric_columns(rows)
    header = [*keys, "seeds", *(SHOWN.get(c, c) + (" (%)" if c in RATES else "") for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for labels, group in group_rows(rows, keys).items():
        cells = [format_values([row.get(c) for row in group], c) for c in columns]
        lines.append("| " + " | ".join([*labels, str(len(group)), *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(keys: Sequence[str], planned: list[PlannedCell], root: Path) -> list[dict[str, Any]]:
    """Write sweep.csv and sweep.md in ``root``; returns the rows."""
    rows = cell_rows(keys, planned, root)
    write_csv(rows, root / CSV_FILE)
    write_atomic(root / MARKDOWN_FILE, markdown_table(rows, keys))
    return rows


@dataclass(frozen=True)
class SweepResults:
    """A finished (or partly finished) sweep read back from its directory."""

    path: Path
    name: str
    grid: dict[str, list[str]]
    rows: list[dict[str, Any]]
    document: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        """The grid keys, in axis order."""
        return list(self.grid)


def read_sweep(path: Path) -> SweepResults:
    """sweep.yaml and sweep.csv of a sweep directory; FileNotFoundError naming what is missing."""
    for name in (SWEEP_FILE, CSV_FILE):
        if not (path / name).exists():
            raise FileNotFoundError(f"{path}: no {name} (not a sweep directory, or the sweep never ran)")
    document = yaml.safe_load((path / SWEEP_FILE).read_text())
    grid = {key: [str(label) for label in values] for key, values in document["grid"].items()}
    return SweepResults(path, document["name"], grid, read_csv(path / CSV_FILE, list(grid)), document)
