"""A sweep's results as rows: sweep.csv (one row per cell and seed), and per grid combination
the mean over seeds with its 95% confidence interval: sweep_ci.csv (machine-readable) and a
Markdown table, sweep.md.

Units: rates (MA, ASR, detection, shares) are fractions 0..1 in the CSV files and JSON documents
and percent in the Markdown and console tables, whose headers say "(%)"; times are seconds.
Every row also says which attack and defense its run had (:func:`run_settings`)."""

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
from scipy import stats

from fedsec.experiments.sweep import SWEEP_FILE, PlannedCell, summary_of
from fedsec.results import write_atomic

CSV_FILE = "sweep.csv"
CI_FILE = "sweep_ci.csv"
MARKDOWN_FILE = "sweep.md"
METRICS = ("ma", "best_ma", "asr", "max_asr", "asr_clean_baseline", "precision", "recall", "fpr", "f1",
           "malicious_share", "client_dp_epsilon", "rounds", "aggregate_s", "wall_s")
RATES = {"ma", "best_ma", "asr", "max_asr", "asr_clean_baseline", "precision", "recall", "fpr", "f1",
         "malicious_share", "attack_budget"}
DETECTION_RATES = {"precision", "recall", "fpr", "f1"}
"""Null when the defense never rejects: shown as "n/a" (docs/metrics.md#detection)."""
SHOWN = {"ma": "MA", "best_ma": "best MA", "asr": "ASR", "max_asr": "peak ASR",
         "asr_clean_baseline": "clean-model ASR", "recall": "recall", "fpr": "FPR",
         "malicious_share": "malicious share", "client_dp_epsilon": "client-level ε", "wall_s": "time",
         "aggregate_s": "aggregation time",
         "durability": "durability (rounds)", "attack_budget": "attack budget", "setting_attack": "attack",
         "setting_defense": "defense", "setting_data": "data"}
TEXT_SETTINGS = ("setting_attack", "setting_defense", "setting_data")
"""What every row says about its run's set-up as text (:func:`run_settings`); named apart from any
grid key (a scenario path)."""
WATERMARK_PREFIX = "wm_"
CAPTION = ("Mean over seeds ± half-width of its 95% confidence interval (Student's t, k - 1 degrees of freedom); "
           "a single seed shows its value alone. n/a: the defense never rejects an update. Clean-model ASR: the "
           "same trigger on the round-0 (untrained) global model, the level an ASR is read against.")


def header(key: str) -> str:
    """A column's title with its unit: ``MA (%)``, ``time (s)``."""
    unit = " (%)" if key in RATES else " (s)" if key.endswith("_s") else ""
    return SHOWN.get(key, key) + unit


def run_settings(scenario: dict[str, Any]) -> dict[str, Any]:
    """A run's set-up as a table shows it, from its resolved scenario (as scenario.yaml holds it):
    ``setting_attack`` (methods and who: ``badnets+scaling, 20% of clients``; ``none``),
    ``setting_defense`` (stages in order; ``fedavg`` for none), ``setting_data`` (dataset,
    clients, partitioner) and ``attack_budget`` (share of clients malicious, 0..1)."""
    attack = scenario.get("attack") or {}
    data = scenario.get("data") or {}
    clients = int(data.get("num_clients") or 0)
    methods = "+".join(str(attack[kind]["name"]) for kind in ("data", "model") if attack.get(kind))
    if attack.get("ids") is not None:
        budget = len(attack["ids"]) / clients if clients else None
        who = f"clients {','.join(str(i) for i in attack['ids'])}"
    else:
        budget = attack.get("fraction", 0.0) if attack else 0.0
        who = f"{100 * budget:g}% of clients" if attack else ""
    partitioner = data.get("partitioner") or {}
    split = partitioner.get("name", "")
    if "alpha" in partitioner:
        split += f" α={partitioner['alpha']:g}"
    return {
        "setting_attack": f"{methods}, {who}" if attack else "none",
        "setting_defense": "+".join(str(d.get("name")) for d in scenario.get("defenses") or []) or "fedavg",
        "setting_data": ", ".join(part for part in (data.get("dataset"), clients and f"{clients} clients", split)
                                  if part) or "–",
        "attack_budget": budget,
    }


def cell_rows(keys: Sequence[str], planned: list[PlannedCell], root: Path) -> list[dict[str, Any]]:
    """One row per cell: grid labels, seed, status, summary metrics, watermark keys, run path."""
    rows = []
    for p in planned:
        summary = summary_of(p) or {}
        row: dict[str, Any] = dict(zip(keys, p.cell.labels, strict=True))
        row["seed"] = p.scenario.seed
        row.update(run_settings(p.scenario.model_dump(mode="json")))
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
    return ["ma", "asr", *_recorded(rows, "asr_clean_baseline"), "recall", "fpr", "malicious_share",
            *_recorded(rows, "client_dp_epsilon"), *watermark, "wall_s"]


def _recorded(rows: list[dict[str, Any]], key: str) -> list[str]:
    """``[key]`` when some row has a value for it, else nothing: a column only some runs have."""
    return [key] if any(row.get(key) is not None for row in rows) else []


def _setting(group: list[dict[str, Any]], key: str) -> str:
    return " / ".join(dict.fromkeys(str(row.get(key)) for row in group))


def split_settings(rows: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """The settings every finished row shares (shown once, above a table) and those that differ
    between rows (shown as columns)."""
    finished = [row for row in rows if row.get("status", "finished") == "finished"]
    shared = {key: _setting(finished, key) for key in TEXT_SETTINGS
              if finished and len({str(row.get(key)) for row in finished}) == 1}
    return shared, [key for key in TEXT_SETTINGS if key not in shared]


def settings_line(shared: dict[str, str]) -> str:
    """``Every run: attack ...; defense ...; data ...`` (empty when nothing is shared)."""
    return "Every run: " + "; ".join(f"{SHOWN[key]} {value}" for key, value in shared.items()) + "\n\n" \
        if shared else ""


def mean_ci95(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean of k values (seeds) and the half-width of its 95% confidence interval,
    ``t_{0.975, k-1} s / sqrt(k)`` with s the sample standard deviation (None for k = 1)."""
    k = len(values)
    mean = statistics.fmean(values)
    if k < 2:
        return mean, None
    return mean, float(stats.t.ppf(0.975, k - 1)) * statistics.stdev(values) / math.sqrt(k)


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def format_values(values: list[Any], key: str) -> str:
    """``mean ± 95% CI`` over seeds (rates in %; the value alone for one seed); booleans as "k/n";
    "n/a" for detection rates nobody recorded (a defense that never rejects); ``–`` for other
    values nobody recorded."""
    present = _present(values)
    if not present:
        return "n/a" if key in DETECTION_RATES else "–"
    if all(isinstance(v, bool) for v in present):
        return f"{sum(present)}/{len(present)}"
    if not all(isinstance(v, (int, float)) for v in present):
        return "/".join(sorted({str(v) for v in present}))
    mean, half = mean_ci95([float(v) for v in present])
    scale, digits = (100.0, 1) if key in RATES else (1.0, 3 if abs(mean) < 10 else 1)
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * half:.{digits}f}" if half is not None else "")


def group_rows(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows of finished cells grouped by their grid labels (in first-seen order)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "finished":
            groups.setdefault(tuple(str(row[k]) for k in keys), []).append(row)
    return groups


def markdown_table(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    """One line per grid combination: labels, seeds run, mean ± 95% CI of each metric column;
    then the caption saying so."""
    columns = metric_columns(rows)
    shared, varying = split_settings(rows)
    titles = [*keys, *(SHOWN[k] for k in varying), "seeds", *(header(c) for c in columns)]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for labels, group in group_rows(rows, keys).items():
        cells = [format_values([row.get(c) for row in group], c) for c in columns]
        lines.append("| " + " | ".join([*labels, *(_setting(group, k) for k in varying), str(len(group)), *cells])
                     + " |")
    return settings_line(shared) + "\n".join(lines) + "\n\n" + CAPTION + "\n"


def ci_rows(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per grid combination: its labels, ``seeds`` (finished runs), and for every numeric
    metric ``<metric>_mean``, ``<metric>_ci95`` (half-width of the 95% interval, None for one
    value) and ``<metric>_n`` (runs that recorded it); booleans count as 0/1."""
    watermark = sorted({k for row in rows for k in row if k.startswith(WATERMARK_PREFIX)})
    metrics = [*METRICS, "attack_budget", *watermark]
    table = []
    for labels, group in group_rows(rows, keys).items():
        line: dict[str, Any] = {**dict(zip(keys, labels, strict=True)),
                                **{key: _setting(group, key) for key in TEXT_SETTINGS}, "seeds": len(group)}
        for metric in metrics:
            values = [float(v) for v in _present([row.get(metric) for row in group]) if isinstance(v, (int, float))]
            mean, half = mean_ci95(values) if values else (None, None)
            line.update({f"{metric}_mean": mean, f"{metric}_ci95": half, f"{metric}_n": len(values)})
        table.append(line)
    return table


def write_tables(keys: Sequence[str], planned: list[PlannedCell], root: Path) -> list[dict[str, Any]]:
    """Write sweep.csv, sweep_ci.csv and sweep.md in ``root``; returns the rows of sweep.csv."""
    rows = cell_rows(keys, planned, root)
    write_csv(rows, root / CSV_FILE)
    write_csv(ci_rows(rows, keys), root / CI_FILE)
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
