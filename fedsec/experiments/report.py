"""A self-contained HTML report of a run directory or a sweep directory.

The page has no external reference: styles are inline and every plot is a PNG embedded as a
``data:`` URL, so the file can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import yaml
from pydantic import BaseModel, NonNegativeInt, ValidationError, model_validator

from fedsec.experiments import figures
from fedsec.experiments.sweep import SWEEP_FILE
from fedsec.experiments.table import (
    CAPTION,
    CSV_FILE,
    DETECTION_RATES,
    METRICS,
    RATES,
    SHOWN,
    WATERMARK_PREFIX,
    SweepResults,
    format_values,
    group_rows,
    mean_ci95,
    metric_columns,
    read_sweep,
)
from fedsec.results import METRICS_FILE, PARTITIONS_FILE, SCENARIO_FILE, SUMMARY_FILE, RunDirectory, write_atomic
from fedsec.scenario import ScenarioError, read_yaml, validation_lines

REPORT_FILE = "report.html"
GAME_FILE = "game.json"
# Per-round second counters that are phases of the round (round_s is their total, client_train_s
# a per-client mean, both shown elsewhere).
NOT_PHASES = {"round_s", "client_train_s"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
code { background: #f3f3f3; padding: 0 0.2em; }
.figures { display: flex; flex-wrap: wrap; gap: 0.5em; } .figures img { max-width: 540px; }
"""


def image(png: bytes, alt: str) -> str:
    """An <img> carrying the PNG itself."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 1) -> str:
    """An HTML table; the first ``text_columns`` columns are left-aligned."""
    def cell(tag: str, i: int, value: Any) -> str:
        css = ' class="text"' if i < text_columns else ""
        return f"<{tag}{css}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """A whole HTML document: a title and (heading, HTML body) sections."""
    parts = [f"<h2>{html.escape(heading)}</h2>\n{body}" for heading, body in sections if body]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts)
            + "\n</body></html>\n")


# -- reading: every file is checked before anything is drawn; ValueError names the file ----------

# Round-record keys the report adds up or plots as numbers (besides every key ending in _s).
COUNTERS = ("tp", "fp", "fn", "tn", "bytes_down", "bytes_up")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (summary.json, partitions.json, game.json)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested past the parser's depth
        raise ValueError(f"{path}: not valid JSON ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a JSON object")
    return document


def _record_problem(record: Any) -> str | None:
    """Why a round record cannot be reported: not a mapping, no round number, a counter not a number."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("round"), int) or isinstance(record["round"], bool) or record["round"] < 1:
        return "no positive integer round"
    wrong = [k for k, v in record.items()
             if (k in COUNTERS or k.endswith("_s")) and v is not None and not _is_number(v)]
    return f"{wrong[0]} is not a number" if wrong else None


def read_rounds(run: RunDirectory) -> list[dict[str, Any]]:
    """The run's round records (a torn last line, left by a crash, is skipped)."""
    path = run.file(METRICS_FILE)
    try:
        records = run.rounds()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, or a line nested past the parser's depth
        raise ValueError(f"{path}: not JSON lines ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    for number, record in enumerate(records, 1):
        if problem := _record_problem(record):
            raise ValueError(f"{path}: record {number}: {problem}")
    return records


def _checked(model: type[BaseModel], document: dict[str, Any], path: Path) -> dict[str, Any]:
    """``document`` validated against ``model`` (keys it leaves unset are dropped); ValueError naming
    the file and the first bad field."""
    try:
        return model.model_validate(document).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise ValueError(f"{path}: {validation_lines(exc)[0]}") from None


def _yaml_document(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``, read as strictly as a scenario."""
    try:
        return read_yaml(path)
    except ScenarioError as exc:
        raise ValueError(exc.lines[0]) from None


class _Named(BaseModel):
    name: str


class _AttackView(BaseModel):
    fraction: float | None = None
    ids: list[int] | None = None
    data: _Named | None = None
    model: _Named | None = None


class _ScenarioView(BaseModel):
    """What the report shows of scenario.yaml. The rest is not checked: the report describes a run
    as it was, even one whose scenario a later fedsec would refuse."""

    seed: int | None = None
    rounds: int | None = None
    data: dict[str, Any] | None = None
    model: _Named | None = None
    sampling: dict[str, Any] | None = None
    attack: _AttackView | None = None
    defenses: list[_Named] | None = None


def read_run_scenario(run: RunDirectory) -> dict[str, Any]:
    """The parts of the run's scenario.yaml the report shows."""
    path = run.file(SCENARIO_FILE)
    return _checked(_ScenarioView, _yaml_document(path), path)


class _Partitions(BaseModel):
    """What the report reads of partitions.json: one row of label counts per client."""

    label_counts: list[list[NonNegativeInt]] = []

    @model_validator(mode="after")
    def _rectangular(self) -> Self:
        if len({len(row) for row in self.label_counts}) > 1:
            raise ValueError("label_counts: rows of different lengths")
        return self


class _Sweep(BaseModel):
    """What the report reads of sweep.yaml."""

    name: str
    grid: dict[str, dict[Any, Any]]  # key -> {label: value}
    set: dict[str, Any] | None = None


class _Game(BaseModel):
    """What the report reads of game.json (as ``fedsec game`` writes it)."""

    attacker_labels: list[str]
    defender_labels: list[str]
    payoff: list[list[float]]
    attacker_strategy: list[float]
    defender_strategy: list[float]
    ma_min: float
    value: float

    @model_validator(mode="after")
    def _shapes(self) -> Self:
        rows, columns = len(self.attacker_labels), len(self.defender_labels)
        if (len(self.payoff), len(self.attacker_strategy), len(self.defender_strategy)) != (rows, rows, columns) \
                or any(len(row) != columns for row in self.payoff):
            raise ValueError("payoff, labels and strategies differ in size")
        return self


def read_sweep_results(path: Path) -> SweepResults:
    """:func:`read_sweep` with sweep.yaml and every sweep.csv row checked (FileNotFoundError when one
    of them is missing)."""
    if (path / SWEEP_FILE).exists():
        _checked(_Sweep, _yaml_document(path / SWEEP_FILE), path / SWEEP_FILE)
    try:
        results = read_sweep(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, csv.Error) as exc:  # sweep.yaml is checked: the CSV file is at fault
        raise ValueError(f"{path / CSV_FILE}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    for line, row in enumerate(results.rows, 2):  # line 1 is the header
        if problem := _row_problem(row, results.grid):
            raise ValueError(f"{path / CSV_FILE}: line {line}: {problem}")
    return results


def _row_problem(row: dict[str, Any], grid: dict[str, list[str]]) -> str | None:
    """Why a sweep.csv row cannot be reported: a column missing, a label not in the grid, a metric
    not a number."""
    missing = [k for k in (*grid, "status", "run") if row.get(k) is None]
    if missing:
        return f"no {missing[0]}"
    unknown = [k for k, labels in grid.items() if row[k] not in labels]
    if unknown:
        return f"{unknown[0]}: {row[unknown[0]]!r} is not one of the grid's labels"
    wrong = [k for k in METRICS if row.get(k) is not None and not _is_number(row[k])]
    return f"{wrong[0]} is not a number" if wrong else None


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["round"], float(r[key])) for r in records
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def _fmt(value: Any, key: str) -> str:
    if isinstance(value, float):
        return f"{100 * value:.2f} %" if key in RATES else f"{value:.4g}"
    if value is None:
        return "n/a" if key in DETECTION_RATES else "–"
    return str(value)


# -- one run ------------------------------------------------------------------------------------

def _scenario_lines(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    data, attack = scenario.get("data", {}), scenario.get("attack")
    sampling = scenario.get("sampling", {})
    defenses = "+".join(d["name"] for d in scenario.get("defenses") or []) or "fedavg"
    attack_text = "none"
    if attack:
        kinds = [attack[k]["name"] for k in ("data", "model") if attack.get(k)]
        who = f"fraction {attack['fraction']}" if attack.get("fraction") is not None else f"ids {attack.get('ids')}"
        attack_text = f"{' + '.join(kinds)} ({who})"
    return [
        ("dataset", f"{data.get('dataset')}, {data.get('num_clients')} clients, "
                    f"partitioner {yaml.safe_dump(data.get('partitioner'), default_flow_style=True).strip()}"),
        ("model", str(scenario.get("model", {}).get("name"))),
        ("rounds", f"{scenario.get('rounds')} ({sampling.get('clients_per_round') or sampling.get('fraction') or 'all'}"
                   " clients per round)"),
        ("attack", attack_text),
        ("defenses", defenses),
        ("seed", str(scenario.get("seed"))),
    ]


def run_sections(run: RunDirectory) -> list[tuple[str, str]]:
    """Sections of a run's report: setting, summary, accuracy and watermark curves, detection,
    partitions, costs."""
    records = read_rounds(run)
    summary = read_json(run.file(SUMMARY_FILE)) if run.file(SUMMARY_FILE).exists() else {}
    scenario = read_run_scenario(run) if run.file(SCENARIO_FILE).exists() else {}
    partitions = run.file(PARTITIONS_FILE)
    label_counts = _checked(_Partitions, read_json(partitions), partitions)["label_counts"] \
        if partitions.exists() else []
    sections: list[tuple[str, str]] = []
    if scenario:
        sections.append(("Scenario", table(["", ""], _scenario_lines(scenario), text_columns=2)))
    if summary:
        sections.append(("Summary", table(["metric", "value"], [(k, _fmt(v, k)) for k, v in summary.items()])))
    elif records:
        sections.append(("Summary", f"<p>Unfinished run: {len(records)} rounds recorded.</p>"))
    if not records:
        return sections

    keys = sorted({k for r in records for k in r if k.startswith(WATERMARK_PREFIX)})
    rate_keys = [k for k in keys if all(0 <= v <= 1 for _, v in _series(records, k))]
    curves = {label: _series(records, key) for key, label in
              [("ma", "MA"), ("asr", "ASR"), *((k, k) for k in rate_keys)]}
    figs = [image(figures.curves(curves, "Accuracy per round"), "accuracy per round")]
    other = {k: _series(records, k) for k in keys if k not in rate_keys}
    if any(other.values()):
        figs.append(image(figures.curves(other, "Watermark statistics", ylabel="value", percent=False),
                          "watermark statistics per round"))
    sections.append(("Accuracy and watermark", '<div class="figures">' + "".join(figs) + "</div>"))

    sections.append(("Detection", _detection(records)))

    if label_counts:
        sections.append(("Partitions", image(figures.label_histogram(label_counts), "label histogram per client")))
    sections.append(("Costs", _costs(records)))
    return sections


def _detection(records: list[dict[str, Any]]) -> str:
    """Detection rates and counts when the defense may reject (else "n/a"), and the malicious share."""
    body = ""
    if any(r.get("tp") is not None for r in records):
        detection = {name: _series(records, key) for key, name in
                     (("precision", "precision"), ("recall", "recall (TPR)"), ("fpr", "FPR"))}
        body += image(figures.curves(detection, "Detection per round"), "detection rates per round")
        body += table(["count (all rounds)", "clients"],
                      [[k, sum(int(r.get(k) or 0) for r in records)] for k in ("tp", "fp", "fn", "tn")])
    else:
        body += "<p>Detection rates: n/a (the defense never rejects an update).</p>"
    share = _series(records, "malicious_share")
    if share:
        body += image(figures.curves({"malicious share": share}, "Share of the aggregate from attackers"),
                      "malicious share per round")
    return body


def _costs(records: list[dict[str, Any]]) -> str:
    rounds = [r["round"] for r in records]
    phases = sorted({k for r in records for k in r if k.endswith("_s") and k not in NOT_PHASES})
    seconds = {k.removesuffix("_s"): [float(r.get(k) or 0.0) for r in records] for k in phases}
    megabytes = {k.removeprefix("bytes_"): [(r.get(k) or 0) / 1e6 for r in records] for k in ("bytes_down", "bytes_up")}
    figs = image(figures.stacked_bars(rounds, seconds, "Seconds per round by phase", "s"), "seconds per phase")
    figs += image(figures.stacked_bars(rounds, megabytes, "Traffic per round", "MB"), "megabytes per round")
    totals = [[name, f"{sum(values):.2f}"] for name, values in seconds.items()]
    totals += [[f"traffic {name} (MB)", f"{sum(values):.2f}"] for name, values in megabytes.items()]
    return '<div class="figures">' + figs + "</div>" + table(["phase", "total (s)"], totals)


def run_report(path: Path) -> str:
    """The HTML report of one run directory."""
    return page(f"Run {path.name}", run_sections(RunDirectory(path)))


# -- a sweep ------------------------------------------------------------------------------------

def heatmap_axes(keys: Sequence[str]) -> tuple[str, str | None]:
    """Rows and columns of the sweep heatmaps: the attack-like and defense-like grid keys when
    there are both, else the first two keys (a single key gives one row)."""
    attack = next((k for k in keys if "attack" in k), None)
    defense = next((k for k in keys if "defense" in k), None)
    if attack and defense and attack != defense:
        return attack, defense
    return keys[0], keys[1] if len(keys) > 1 else None


def mean_matrix(results: SweepResults, metric: str, row_key: str, column_key: str | None) -> np.ndarray:
    """Mean of ``metric`` over seeds and the other axes, per (row label, column label)."""
    rows = results.grid[row_key]
    columns = results.grid[column_key] if column_key else [""]
    sums, counts = np.zeros((len(rows), len(columns))), np.zeros((len(rows), len(columns)))
    for row in results.rows:
        value = row.get(metric)
        if row.get("status") != "finished" or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        i, j = rows.index(row[row_key]), columns.index(row[column_key]) if column_key else 0
        sums[i, j] += value
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts


def sweep_sections(results: SweepResults) -> list[tuple[str, str]]:
    """Sections of a sweep's report: setting, table, heatmaps, curves per grid combination."""
    keys = results.keys
    doc = results.document
    setting = [["base scenario", doc.get("base")], ["seeds", doc.get("seeds") or "scenario's own"]]
    setting += [[f"grid: {k}", ", ".join(labels)] for k, labels in results.grid.items()]
    setting += [[f"set: {k}", json.dumps(v)] for k, v in (doc.get("set") or {}).items()]
    sections = [("Sweep", table(["", ""], setting, text_columns=2))]

    columns = metric_columns(results.rows)
    groups = group_rows(results.rows, keys)
    header = [*keys, "seeds", *(SHOWN.get(c, c) + (" (%)" if c in RATES else "") for c in columns)]
    lines = [[*labels, len(g), *(format_values([r.get(c) for r in g], c) for c in columns)]
             for labels, g in groups.items()]
    missing = sum(1 for r in results.rows if r.get("status") != "finished")
    note = f"<p>{missing} cells have not finished.</p>" if missing else ""
    caption = f"<p>{html.escape(CAPTION)}</p>"
    sections.append(("Results (mean ± 95% CI over seeds)",
                     table(header, lines, text_columns=len(keys)) + caption + note))

    row_key, column_key = heatmap_axes(keys)
    heatmaps = []
    for metric in ["ma", "asr", "recall", "fpr", "malicious_share",
                   *(c for c in columns if c.startswith(WATERMARK_PREFIX))]:
        matrix = mean_matrix(results, metric, row_key, column_key)
        if np.isfinite(matrix).any():
            percent = metric in RATES or bool(np.nanmax(np.abs(matrix)) <= 1)
            heatmaps.append(image(figures.heatmap(
                matrix, results.grid[row_key], results.grid[column_key] if column_key else [""], row_key,
                column_key or "", f"{SHOWN.get(metric, metric)}{' (%)' if percent else ''}", percent=percent,
            ), f"heatmap of {metric}"))
    sections.append(("Heatmaps", '<div class="figures">' + "".join(heatmaps) + "</div>"))
    sections.append(("Per round", _sweep_curves(results, groups)))
    game = results.path / GAME_FILE
    if game.exists():
        sections.append(("Game", _game_section(_checked(_Game, read_json(game), game))))
    return sections


def _sweep_curves(results: SweepResults, groups: dict[tuple[Any, ...], list[dict[str, Any]]]) -> str:
    """MA, ASR and malicious share per round of each grid combination: the mean over its seeds,
    with the 95% confidence interval as a band."""
    runs = {labels: [read_rounds(RunDirectory(results.path / str(row["run"]))) for row in group]
            for labels, group in groups.items()}
    figs = []
    for metric, name in (("ma", "MA"), ("asr", "ASR"), ("malicious_share", "malicious share")):
        series, bands = {}, {}
        for labels, records in runs.items():
            per_round: dict[int, list[float]] = {}
            for run in records:
                for round_number, value in _series(run, metric):
                    per_round.setdefault(round_number, []).append(value)
            intervals = [(k, *mean_ci95(v)) for k, v in sorted(per_round.items())]
            series[" / ".join(labels)] = [(k, mean) for k, mean, _ in intervals]
            bands[" / ".join(labels)] = [half for _, _, half in intervals]
        if any(series.values()):
            figs.append(image(figures.curves(series, f"{name} per round (mean, 95% CI over seeds)", bands=bands),
                              f"{name} per round"))
    return '<div class="figures">' + "".join(figs) + "</div>"


def _game_section(game: dict[str, Any]) -> str:
    payoff = np.asarray(game["payoff"], dtype=float)
    body = image(figures.heatmap(payoff, game["attacker_labels"], game["defender_labels"], "attacker", "defender",
                                 f"Attacker utility ASR x 1[MA > {game['ma_min']}] (%)"), "payoff matrix")
    body += table(["attacker strategy", "probability"],
                  [[a, f"{p:.3f}"] for a, p in zip(game["attacker_labels"], game["attacker_strategy"], strict=True)])
    body += table(["defender strategy", "probability"],
                  [[d, f"{p:.3f}"] for d, p in zip(game["defender_labels"], game["defender_strategy"], strict=True)])
    return body + f"<p>Game value (attacker's expected utility): {100 * game['value']:.2f} %</p>"


def sweep_report(path: Path) -> str:
    """The HTML report of one sweep directory."""
    results = read_sweep_results(path)
    return page(f"Sweep {results.name}", sweep_sections(results))


def write_report(path: Path, out: Path | None = None) -> Path:
    """Write the report of a sweep directory (it has sweep.yaml) or a run directory (it has
    metrics.jsonl); returns the file written (default: report.html inside ``path``)."""
    if (path / SWEEP_FILE).exists():
        text = sweep_report(path)
    elif (path / METRICS_FILE).exists() or (path / SUMMARY_FILE).exists():
        text = run_report(path)
    else:
        raise FileNotFoundError(f"{path}: neither a sweep directory (sweep.yaml) nor a run directory (metrics.jsonl)")
    target = out or path / REPORT_FILE
    write_atomic(target, text)
    return target
