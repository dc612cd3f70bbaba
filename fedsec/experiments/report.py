"""A self-contained, interactive HTML report of a run directory, several run directories, or a
sweep directory.

Curves, bars and heat-maps are Plotly charts (hover, zoom, legend entries that hide and show a
series) drawn from JSON specs embedded in the page with the Plotly library itself, so the file
opens offline (see :mod:`fedsec.experiments.page`); the privacy audit's reconstructions and the
inspectors' reconstructed triggers are embedded as PNG data URIs. A section appears only when the
run has its data: no detection section without attackers, no watermark curve without a watermark,
no privacy, inspection or runtime-guards section without their audit's records.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, model_validator

from fedsec.experiments import charts
from fedsec.experiments.page import Cell, chart, figure, page, table
from fedsec.experiments.page import charts as side_by_side
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
from fedsec.provenance import ENVIRONMENT_FILE
from fedsec.results import (
    CLIENTS_FILE,
    METRICS_FILE,
    PARTITIONS_FILE,
    SCENARIO_FILE,
    SUMMARY_FILE,
    RunDirectory,
    read_jsonl,
    write_atomic,
)
from fedsec.scenario import ScenarioError, read_yaml, validation_lines

REPORT_FILE = "report.html"
GAME_FILES = "game*.json"
"""What ``fedsec game`` writes in a sweep directory, one file per analysis."""
# Per-round second counters that are phases of the round (round_s is their total, client_train_s
# a per-client mean, both shown elsewhere).
NOT_PHASES = {"round_s", "client_train_s"}
ATTACK_KEYS = {"asr", "max_asr", "durability", "malicious_share", "malicious_share_rounds", *DETECTION_RATES}
"""Summary keys about attackers: left out of the report of a run without any."""
PRIVACY_FILE = "privacy.jsonl"
"""The privacy audit's records (``fedsec.privacy.audit.RECORD_FILE``; not imported: it pulls in torch)."""
INSPECTION_FILE = "inspection.jsonl"
"""The inspection audit's records (``fedsec.inspection.audit.RECORD_FILE``)."""
GUARDS_FILE = "guards.jsonl"
"""The runtime-guards audit's records (``fedsec.guards.audit.RECORD_FILE``)."""
AUDIT_SUMMARIES = {"privacy", "inspection", "runtime_guards"}
"""Summary entries an audit nests: their figures are in the audit's own section."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 8_000_000
"""Largest reconstruction grid embedded in a report (a grid of 64 Fashion-MNIST images is ~60 kB)."""


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
    costs: dict[str, float] | None = None

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


class _EnvironmentRecord(BaseModel):
    """What the report reads of an environment.jsonl line (fedsec.provenance)."""

    started: str | None = None
    resumed_after_round: int | None = None
    versions: dict[str, str | None] = {}
    python: str | None = None
    fedsec_commit: str | None = None
    device: str | None = None
    cpu_count: int | None = None
    server_threads: int | None = None
    client_threads: int | None = None


class _ClientRecord(BaseModel):
    """What the report reads of a clients.jsonl line."""

    round: int
    client: int
    role: str | None = None
    accepted: bool | None = None
    scores: dict[str, float | None] | None = None
    train_loss: float | None = None
    failure: str | None = None


def _json_objects(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none when it is absent), each checked to be an object; a
    ValueError names the file and the record."""
    try:
        records = read_jsonl(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not JSON lines ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {number}: not a JSON object")
    return records


def _checked_records(path: Path, model: type[BaseModel],
                     keep: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` that ``keep`` selects, as ``model`` reads them (none when the file
    is absent); a ValueError names the file, the record and the problem."""
    checked = []
    for number, record in enumerate(_json_objects(path), 1):
        try:
            if keep(record):
                checked.append(model.model_validate(record).model_dump())
        except ValidationError as exc:
            raise ValueError(f"{path}: record {number}: {validation_lines(exc)[0]}") from None
    return checked


def read_clients(run: RunDirectory) -> list[dict[str, Any]]:
    """The run's per-client records (none when clients.jsonl is absent)."""
    return _checked_records(run.file(CLIENTS_FILE), _ClientRecord)


def read_environment(run: RunDirectory) -> list[dict[str, Any]]:
    """One record per start of the run's server (none when environment.jsonl is absent)."""
    return _checked_records(run.file(ENVIRONMENT_FILE), _EnvironmentRecord)


def _series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["round"], float(r[key])) for r in records if _is_number(r.get(key))]


# -- humanised values: rates in %, bytes in MB, seconds in s --------------------------------------

def quantity(value: Any, key: str) -> Cell:
    """A summary or record value as people read it, sorted by the raw number: a rate in %, a
    byte count in MB, a duration in s; "n/a" for a detection rate of a defense that never rejects."""
    if value is None:
        return Cell("n/a" if key in DETECTION_RATES else "–")
    if not _is_number(value):
        return Cell(str(value))
    if key in RATES:
        return Cell(f"{100 * value:.2f} %", value)
    if key.startswith("bytes_"):
        return Cell(f"{value / 1e6:.2f} MB", value)
    if key.endswith("_s"):
        return Cell(f"{value:.2f} s", value)
    return Cell(f"{value:.4g}" if isinstance(value, float) else str(value), value)


def key_name(key: str) -> str:
    """A summary key as a label: "traffic down", "train time", "malicious share"."""
    if key.startswith("bytes_"):
        return f"traffic {key.removeprefix('bytes_')}"
    if key.endswith("_s"):
        return f"{key.removesuffix('_s').replace('_', ' ')} time"
    return {"ma": "MA", "best_ma": "best MA", "asr": "ASR", "max_asr": "peak ASR", "fpr": "FPR"}.get(
        key, key.replace("_", " "))


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


def has_attackers(scenario: dict[str, Any], records: list[dict[str, Any]], summary: dict[str, Any]) -> bool:
    """Whether anything in the run could be detected: an attack in its scenario, or a round
    with a malicious client (a true positive or a false negative), or an ASR measured."""
    attack = scenario.get("attack") or {}
    if attack.get("data") or attack.get("model"):
        return True
    return any((r.get("tp") or 0) + (r.get("fn") or 0) > 0 or r.get("asr") is not None for r in records) \
        or summary.get("asr") is not None


def _summary_table(summary: dict[str, Any], attacked: bool) -> str:
    rows = [(key_name(k), quantity(v, k)) for k, v in summary.items() if k != "name"
            and (attacked or k not in ATTACK_KEYS)]
    if not attacked and _is_number(summary.get("fpr")):
        rows.append(("honest updates rejected", quantity(summary["fpr"], "fpr")))
    return table(["metric", "value"], rows)


def run_sections(run: RunDirectory) -> list[tuple[str, str]]:
    """Sections of a run's report: setting, summary, accuracy and watermark curves, detection
    (only with attackers), per-client table, partitions, privacy, inspection and runtime guards
    (each only with its audit's records), costs."""
    records = read_rounds(run)
    summary = read_json(run.file(SUMMARY_FILE)) if run.file(SUMMARY_FILE).exists() else {}
    scenario = read_run_scenario(run) if run.file(SCENARIO_FILE).exists() else {}
    partitions = run.file(PARTITIONS_FILE)
    label_counts = _checked(_Partitions, read_json(partitions), partitions)["label_counts"] \
        if partitions.exists() else []
    clients = read_clients(run)
    environment = read_environment(run)
    privacy = read_privacy(run)
    inspections = read_inspections(run)
    guards = read_guards(run)
    attacked = has_attackers(scenario, records, summary)
    sections: list[tuple[str, str]] = []
    if scenario:
        sections.append(("Scenario", table(["", ""], _scenario_lines(scenario), text_columns=2)))
    if summary:
        shown = {k: v for k, v in summary.items() if k not in AUDIT_SUMMARIES}
        sections.append(("Summary", _summary_table(shown, attacked)))
    elif records:
        sections.append(("Summary", f"<p>Unfinished run: {len(records)} rounds recorded.</p>"))
    if not records:
        return sections
    sections.append(("Accuracy and watermark", _accuracy(records, attacked)))
    if attacked:
        sections.append(("Detection", _detection(records)))
    sections.append(("Clients", _clients(clients)))
    if label_counts:
        sections.append(("Partitions", chart(charts.label_histogram(range(len(label_counts)), label_counts),
                                             "label histogram per client")))
    sections.append(("Privacy", _privacy(run, privacy)))
    sections.append(("Inspection", _inspection(run, inspections)))
    sections.append(("Runtime guards", _guards(guards)))
    sections.append(("Costs", _costs(records)))
    if environment:
        sections.append(("Environment", _environment(environment)))
    return sections


def _environment(starts: list[dict[str, Any]]) -> str:
    """One row per start of the server: what a reader needs to repeat the run bit for bit."""
    def text(value: Any) -> str:
        return "–" if value is None else str(value)

    rows = [(text(s["started"]), text(s["resumed_after_round"]), text(s["fedsec_commit"] and s["fedsec_commit"][:12]),
             text(s["versions"].get("torch")), text(s["versions"].get("flwr")), text(s["python"]), text(s["device"]),
             text(s["cpu_count"]), f"{text(s['server_threads'])} / {text(s['client_threads'])}") for s in starts]
    return ("<p>Each start of the server (the first, then every resume). A seeded run repeats bit for bit "
            "with the same versions and thread counts; the full record is in environment.jsonl.</p>"
            + table(["started (UTC)", "resumed after round", "fedsec commit", "torch", "flwr", "python", "device",
                     "cores", "threads: server / client"], rows, text_columns=7))


def _accuracy(records: list[dict[str, Any]], attacked: bool) -> str:
    """MA (and ASR with attackers) and the watermark's rates per round; other watermark
    statistics (bits, p-values' logs) on a chart of their own."""
    keys = sorted({k for r in records for k in r if k.startswith(WATERMARK_PREFIX)})
    rate_keys = [k for k in keys if all(0 <= v <= 1 for _, v in _series(records, k))]
    curves = {label: _series(records, key) for key, label in
              [("ma", "MA"), *((("asr", "ASR"),) if attacked else ()), *((k, k) for k in rate_keys)]}
    parts = [chart(charts.curves(curves, "Accuracy per round"), "accuracy per round")]
    other = {k: _series(records, k) for k in keys if k not in rate_keys}
    if any(other.values()):
        parts.append(chart(charts.curves(other, "Watermark statistics", y_title="value", percent=False),
                           "watermark statistics per round"))
    return side_by_side(*parts)


def _detection(records: list[dict[str, Any]]) -> str:
    """Detection rates and counts when the defense may reject (else "n/a"), and the malicious share."""
    parts, body = [], ""
    if any(r.get("tp") is not None for r in records):
        rates = {name: _series(records, key) for key, name in
                 (("precision", "precision"), ("recall", "recall (TPR)"), ("fpr", "FPR"))}
        parts.append(chart(charts.curves(rates, "Detection per round"), "detection rates per round"))
        body = table(["count (all rounds)", "clients"],
                     [[k, sum(int(r.get(k) or 0) for r in records)] for k in ("tp", "fp", "fn", "tn")])
    else:
        body = "<p>Detection rates: n/a (the defense never rejects an update).</p>"
    share = _series(records, "malicious_share")
    if share:
        parts.append(chart(charts.curves({"malicious share": share}, "Share of the aggregate from attackers"),
                           "malicious share per round"))
    return side_by_side(*parts) + body


def _clients(records: list[dict[str, Any]]) -> str:
    """One sortable row per client: role, rounds it was sampled in, updates accepted, mean
    defense score per stage, mean training loss, failures."""
    if not records:
        return ""
    stages = sorted({s for r in records for s in (r.get("scores") or {})})
    by_client: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_client.setdefault(record["client"], []).append(record)
    rows = []
    for client, own in sorted(by_client.items()):
        roles = sorted({r["role"] for r in own if r.get("role")})
        decided = [r["accepted"] for r in own if r.get("accepted") is not None]
        losses = [r["train_loss"] for r in own if r.get("train_loss") is not None]
        row: list[Any] = [client, "/".join(roles) or "–", len(own),
                          Cell(f"{sum(decided)}/{len(decided)}", sum(decided) / len(decided)) if decided else "–"]
        for stage in stages:
            scores = [r["scores"][stage] for r in own if (r.get("scores") or {}).get(stage) is not None]
            row.append(Cell(f"{np.mean(scores):.4g}", float(np.mean(scores))) if scores else "–")
        row.append(Cell(f"{np.mean(losses):.4f}", float(np.mean(losses))) if losses else "–")
        row.append(sum(1 for r in own if r.get("failure")))
        rows.append(row)
    header = ["client", "role", "rounds", "accepted", *(f"score: {s}" for s in stages), "train loss", "failures"]
    return (table(header, rows, text_columns=2, sortable=True)
            + '<p class="note">Click a column header to sort. Scores: mean over the rounds a client was '
              "scored in (each defense stage's own scale).</p>")


class _PrivacyRecord(BaseModel):
    """Fields every privacy.jsonl line has; the rest is checked by its kind's model."""

    round: int = Field(ge=1)
    kind: str


class _Inversion(BaseModel):
    """What the report reads of a gradient-inversion record (``psnr`` null: an exact image)."""

    round: int
    attack: str
    client: int
    images: int
    status: str
    reason: str | None = None
    psnr: list[float | None] | None = None
    ssim: list[float] | None = None
    label_recovery: float | None = None
    seconds: float | None = None
    png: str | None = None


class _Membership(BaseModel):
    """What the report reads of a membership-inference record."""

    model_config = ConfigDict(populate_by_name=True)

    round: int
    attack: str
    members: int
    nonmembers: int
    auc: float
    tpr_low: float | None = Field(None, alias="tpr_at_fpr_0.001")
    tpr_1: float | None = Field(None, alias="tpr_at_fpr_0.01")
    advantage: float | None = None
    member_clients: int | None = None
    nonmember_clients: int | None = None
    client_auc: float | None = None


class _DPSGD(BaseModel):
    """What the report reads of a DP-SGD accounting record (``max_epsilon`` null: infinite)."""

    round: int
    clients: list[int]
    max_epsilon: float | None
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    accountant: str


PRIVACY_KINDS: dict[str, type[BaseModel]] = {"inversion": _Inversion, "membership": _Membership,
                                              "dp-sgd": _DPSGD}


def read_privacy(run: RunDirectory) -> list[tuple[str, dict[str, Any]]]:
    """The privacy audit's records as (kind, fields) (none when privacy.jsonl is absent); a
    record of an unknown kind is skipped, a malformed one is a ValueError naming the file."""
    path = run.file(PRIVACY_FILE)
    checked = []
    for number, record in enumerate(_json_objects(path), 1):
        try:
            kind = _PrivacyRecord.model_validate(record).kind
            if kind in PRIVACY_KINDS:
                checked.append((kind, PRIVACY_KINDS[kind].model_validate(record).model_dump()))
        except ValidationError as exc:
            raise ValueError(f"{path}: record {number}: {validation_lines(exc)[0]}") from None
    return checked


def reconstruction_png(run: RunDirectory, name: str, record_file: str = PRIVACY_FILE) -> bytes | None:
    """The bytes of an image an audit wrote (``name`` relative to the run directory, as its record
    in ``record_file`` gives it), or None when it is missing, not a PNG or too large; ValueError
    when ``name`` points outside the run directory."""
    root = run.path.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{run.file(record_file)}: png {name!r} is outside the run directory")
    try:
        if not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_SIGNATURE) else None


def _finite_mean(values: list[float | None] | None) -> Cell:
    """The mean of per-image figures (null: infinite PSNR of an exact image)."""
    if not values:
        return Cell("–")
    numbers = [np.inf if v is None else v for v in values]
    mean = float(np.mean(numbers))
    return Cell("∞" if not np.isfinite(mean) else f"{mean:.3g}", mean if np.isfinite(mean) else None)


def _decimal(value: float | None, digits: int = 3, unit: str = "") -> Cell:
    return Cell("–") if value is None else Cell(f"{value:.{digits}f}{unit}", value)


def _per_image(values: list[float | None], digits: int) -> str:
    return ", ".join("∞" if v is None else f"{v:.{digits}f}" for v in values)


def _client_auc(record: dict[str, Any]) -> Cell:
    """Client-level AUC with the clients it compares (none when every client trained)."""
    if record["client_auc"] is None:
        return Cell("– (no client left out)" if record["nonmember_clients"] == 0 else "–")
    return Cell(f"{record['client_auc']:.3f} ({record['member_clients']} vs {record['nonmember_clients']} clients)",
                record["client_auc"])


def _privacy(run: RunDirectory, records: list[tuple[str, dict[str, Any]]]) -> str:
    """Gradient inversion (a table, then each reconstruction grid embedded as a data URI with its
    per-image PSNR and SSIM), membership inference and DP-SGD, each only with records."""
    inversions = [r for kind, r in records if kind == "inversion"]
    membership = [r for kind, r in records if kind == "membership"]
    accounted = [r for kind, r in records if kind == "dp-sgd"]
    parts = []
    if inversions:
        rows = [[r["attack"], r["status"], r["round"], r["client"], r["images"], _finite_mean(r["psnr"]),
                 _finite_mean(r["ssim"]), _decimal(r["label_recovery"], 2), _decimal(r["seconds"], 1, " s")]
                for r in inversions]
        reasons = dict.fromkeys(f"{r['status']}: {r['reason']}" for r in inversions if r["reason"])
        parts.append("<h3>Gradient inversion</h3>" + table(
            ["attack", "status", "round", "client", "images", "PSNR (dB, mean)", "SSIM (mean)", "label recovery",
             "time"], rows, text_columns=2)
            + "".join(f'<p class="note">{html.escape(reason)}</p>' for reason in reasons))
        for r in inversions:
            data = reconstruction_png(run, r["png"]) if r["png"] and r["status"] == "reconstructed" else None
            title = f"round {r['round']}, client {r['client']}, {r['attack']}"
            if data is None:
                if r["png"]:
                    parts.append(f"<p>{html.escape(title)}: the grid {html.escape(r['png'])} is missing or not "
                                 "a PNG.</p>")
                continue
            caption = (f"{title.capitalize()}: the client's images (top row) above their reconstructions "
                       f"(bottom row). PSNR per image {_per_image(r['psnr'] or [], 1)} dB; SSIM "
                       f"{_per_image(r['ssim'] or [], 3)}")
            if r["label_recovery"] is not None:
                caption += f"; label recovery {r['label_recovery']:.2f}"
            parts.append(figure("data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                                f"reconstructions: {title}", caption + "."))
    if membership:
        rows = [[r["attack"], r["round"], r["members"], r["nonmembers"], Cell(f"{r['auc']:.3f}", r["auc"]),
                 _decimal(r["tpr_low"]), _decimal(r["tpr_1"]), _decimal(r["advantage"]), _client_auc(r)]
                for r in membership]
        parts.append("<h3>Membership inference</h3>" + table(
            ["attack", "round", "members", "non-members", "AUC", "TPR at 0.1% FPR", "TPR at 1% FPR", "advantage",
             "client-level AUC"], rows, sortable=True)
            + '<p class="note">AUC 0.5 and TPR equal to the FPR are chance; advantage: TPR − FPR at the '
              "attack's own threshold.</p>")
    if accounted:
        last = accounted[-1]
        epsilon = "∞" if last["max_epsilon"] is None else f"{last['max_epsilon']:.3g}"
        clients = len({c for r in accounted for c in r["clients"]})
        parts.append(f"<h3>DP-SGD</h3><p>Clients trained with DP-SGD (σ = {last['noise_multiplier']:g}, "
                     f"C = {last['max_grad_norm']:g}): ε = {epsilon} at δ = {last['delta']:g} after round "
                     f"{last['round']}, the largest of the {clients} clients that trained "
                     f"({html.escape(last['accountant'])} accountant).</p>")
    return "".join(parts)


class _AuditKind(BaseModel):
    kind: str = "inspection"


class _Inspection(BaseModel):
    """What the report reads of an inspection record (``kind: inspection``; repairs are skipped)."""

    round: int
    method: str
    access: str
    flagged: bool
    score: float
    threshold: float
    targets: list[int]
    true_target: int | None = None
    trigger_iou: float | None = None
    queries: int | None = None
    seconds: float
    trigger_png: str | None = None


class _GuardRecord(BaseModel):
    """What the report reads of a runtime-guards record: one chain measured after one round."""

    round: int
    chain: str
    guards: list[str]
    ma: float
    asr: float | None = None
    frr: float
    sda: float
    far: float | None = None
    sasr: float | None = None
    auc: list[float | None] | None = None
    seconds_per_1000: float


def read_inspections(run: RunDirectory) -> list[dict[str, Any]]:
    """The inspection audit's verdicts (none when inspection.jsonl is absent); repair records are
    skipped, a malformed verdict is a ValueError naming the file."""
    return _checked_records(run.file(INSPECTION_FILE), _Inspection,
                            keep=lambda record: _AuditKind.model_validate(record).kind == "inspection")


def read_guards(run: RunDirectory) -> list[dict[str, Any]]:
    """The runtime-guards audit's records (none when guards.jsonl is absent)."""
    return _checked_records(run.file(GUARDS_FILE), _GuardRecord)


def _significant(value: float) -> Cell:
    return Cell(f"{value:.4g}", value)


def _percent(value: float | None) -> Cell:
    return Cell("–") if value is None else Cell(f"{100 * value:.1f} %", value)


def _inspection(run: RunDirectory, records: list[dict[str, Any]]) -> str:
    """Every inspector's verdict per inspected round, then each reconstructed trigger (mask, pattern,
    masked pattern) embedded with what the inspector concluded."""
    if not records:
        return ""
    rows = [[r["method"], r["access"], r["round"], "yes" if r["flagged"] else "no", _significant(r["score"]),
             _significant(r["threshold"]), ", ".join(map(str, r["targets"])) or "–",
             "–" if r["true_target"] is None else str(r["true_target"]), _decimal(r["trigger_iou"], 2),
             "–" if r["queries"] is None else r["queries"], _decimal(r["seconds"], 1, " s")] for r in records]
    parts = [table(["inspector", "access", "round", "flagged", "score", "threshold", "suspected targets",
                    "true target", "trigger IoU", "queries", "time"], rows, text_columns=2, sortable=True)]
    for r in records:
        if r["trigger_png"] is None:
            continue
        title = f"round {r['round']}, {r['method']}"
        data = reconstruction_png(run, r["trigger_png"], INSPECTION_FILE)
        if data is None:
            parts.append(f"<p>{html.escape(title)}: the image {html.escape(r['trigger_png'])} is missing or not "
                         "a PNG.</p>")
            continue
        shown = "mask, pattern and masked pattern" + (", then the true trigger's pixels" if r["trigger_iou"] is not None
                                                      else "")
        caption = (f"{title.capitalize()}: the reconstructed {shown}; suspected targets "
                   f"{', '.join(map(str, r['targets'])) or 'none'}")
        if r["true_target"] is not None:
            caption += f", true target {r['true_target']}"
        if r["trigger_iou"] is not None:
            caption += f", IoU with the true trigger {r['trigger_iou']:.2f}"
        parts.append(figure("data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                            f"reconstructed trigger: {title}", caption + "."))
    return "".join(parts)


def _guards(records: list[dict[str, Any]]) -> str:
    """Every chain's FRR, FAR, SDA and SASR per measured round (with the model's MA and ASR without
    guards), and their curves when a chain was measured after several rounds."""
    if not records:
        return ""
    rows = [[r["chain"], " then ".join(r["guards"]), r["round"], _percent(r["ma"]), _percent(r["asr"]),
             _percent(r["frr"]), _percent(r["far"]), _percent(r["sda"]), _percent(r["sasr"]),
             ", ".join("–" if a is None else f"{a:.3f}" for a in r["auc"] or []) or "–",
             _decimal(r["seconds_per_1000"], 2, " s")] for r in records]
    parts = [table(["chain", "guards", "round", "MA", "ASR", "FRR", "FAR", "SDA", "SASR", "AUC per guard",
                    "per 1,000 inputs"], rows, text_columns=2, sortable=True)
             + '<p class="note">MA and ASR: the model without guards; SDA counts rejected clean inputs as errors, '
               "SASR counts rejected triggered inputs as stopped.</p>"]
    chains = dict.fromkeys(r["chain"] for r in records)
    if len(records) > len(chains):
        series = {f"{chain} {name}": [(r["round"], r[key]) for r in records if r["chain"] == chain
                                      and r[key] is not None]
                  for chain in chains for name, key in (("SDA", "sda"), ("SASR", "sasr"))}
        parts.append(chart(charts.curves(series, "Runtime guards per round"), "runtime guards per round"))
    return "".join(parts)


def _costs(records: list[dict[str, Any]]) -> str:
    rounds = [r["round"] for r in records]
    phases = sorted({k for r in records for k in r if k.endswith("_s") and k not in NOT_PHASES})
    seconds = {k.removesuffix("_s"): [float(r.get(k) or 0.0) for r in records] for k in phases}
    megabytes = {k.removeprefix("bytes_"): [(r.get(k) or 0) / 1e6 for r in records] for k in ("bytes_down", "bytes_up")}
    parts = side_by_side(
        chart(charts.stacked_bars(rounds, seconds, "Seconds per round by phase", "s"), "seconds per phase"),
        chart(charts.stacked_bars(rounds, megabytes, "Traffic per round", "MB"), "megabytes per round"))
    totals = [[name, Cell(f"{sum(values):.2f} s", sum(values))] for name, values in seconds.items()]
    totals += [[f"traffic {name}", Cell(f"{sum(values):.2f} MB", sum(values))] for name, values in megabytes.items()]
    return parts + table(["phase", "total"], totals)


def run_report(path: Path) -> str:
    """The HTML report of one run directory."""
    return page(f"Run {path.name}", run_sections(RunDirectory(path)))


# -- several runs -------------------------------------------------------------------------------

COMPARED = (("ma", "MA"), ("asr", "ASR"), ("malicious_share", "malicious share"), ("recall", "recall (TPR)"),
            ("fpr", "FPR"))


def comparison_report(paths: Sequence[Path]) -> str:
    """The HTML report of several run directories: their summaries side by side (sortable) and
    every per-round curve with one line per run (a legend click hides or shows a run)."""
    runs = {}
    for path in paths:
        run = RunDirectory(path)
        summary = read_json(run.file(SUMMARY_FILE)) if run.file(SUMMARY_FILE).exists() else {}
        runs[path.name] = (summary, read_rounds(run))
    keys = list(dict.fromkeys(k for summary, _ in runs.values() for k in summary if k != "name"))
    rows = [[name, *(quantity(summary.get(k), k) for k in keys)] for name, (summary, _) in runs.items()]
    sections = [("Summary", table(["run", *(key_name(k) for k in keys)], rows, sortable=True))]
    parts = []
    for key, name in COMPARED:
        series = {run: _series(records, key) for run, (_, records) in runs.items()}
        if any(series.values()):
            parts.append(chart(charts.curves(series, f"{name} per round"), f"{name} per round"))
    seconds = {run: _series(records, "round_s") for run, (_, records) in runs.items()}
    if any(seconds.values()):
        parts.append(chart(charts.curves(seconds, "Seconds per round", y_title="s", percent=False),
                           "seconds per round"))
    sections.append(("Per round", side_by_side(*parts)))
    return page(f"{len(runs)} runs", sections)


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
        if row.get("status") != "finished" or not _is_number(value):
            continue
        i, j = rows.index(row[row_key]), columns.index(row[column_key]) if column_key else 0
        sums[i, j] += value
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts


def _sweep_value(values: list[Any], key: str) -> Cell:
    """``mean ± 95% CI`` over seeds (as in sweep.md), sorted by the mean."""
    numbers = [float(v) for v in values if _is_number(v)]
    return Cell(format_values(values, key), float(np.mean(numbers)) if numbers else None)


def sweep_sections(results: SweepResults) -> list[tuple[str, str]]:
    """Sections of a sweep's report: setting, table, heatmaps, curves per grid combination, game."""
    keys = results.keys
    doc = results.document
    setting = [["base scenario", doc.get("base")], ["seeds", doc.get("seeds") or "scenario's own"]]
    setting += [[f"grid: {k}", ", ".join(labels)] for k, labels in results.grid.items()]
    setting += [[f"set: {k}", json.dumps(v)] for k, v in (doc.get("set") or {}).items()]
    sections = [("Sweep", table(["", ""], setting, text_columns=2))]

    columns = metric_columns(results.rows)
    groups = group_rows(results.rows, keys)
    header = [*keys, "seeds", *(SHOWN.get(c, c) + (" (%)" if c in RATES else "") for c in columns)]
    lines = [[*labels, len(g), *(_sweep_value([r.get(c) for r in g], c) for c in columns)]
             for labels, g in groups.items()]
    missing = sum(1 for r in results.rows if r.get("status") != "finished")
    note = f"<p>{missing} cells have not finished.</p>" if missing else ""
    sections.append(("Results (mean ± 95% CI over seeds)",
                     table(header, lines, text_columns=len(keys), sortable=True)
                     + f'<p class="note">{CAPTION} Click a column header to sort.</p>' + note))
    sections.append(("Heatmaps", _heatmaps(results, columns)))
    sections.append(("Per round", _sweep_curves(results, groups)))
    for game in sorted(results.path.glob(GAME_FILES)):
        sections.append((f"Game ({game.stem.removeprefix('game').strip('-') or 'attacker vs defender'})",
                         _game_section(_checked(_Game, read_json(game), game))))
    return sections


def _heatmaps(results: SweepResults, columns: list[str]) -> str:
    """Mean over seeds of each metric per (attack-like label, defense-like label)."""
    row_key, column_key = heatmap_axes(results.keys)
    columns_of_map = results.grid[column_key] if column_key else [""]
    parts = []
    for metric in ["ma", "asr", "recall", "fpr", "malicious_share",
                   *(c for c in columns if c.startswith(WATERMARK_PREFIX))]:
        matrix = mean_matrix(results, metric, row_key, column_key)
        if np.isfinite(matrix).any():
            percent = metric in RATES or bool(np.nanmax(np.abs(matrix)) <= 1)
            spec = charts.heatmap(np.where(np.isfinite(matrix), matrix, None).tolist(), results.grid[row_key],
                                  columns_of_map, row_key, column_key or "",
                                  f"{SHOWN.get(metric, metric)} (mean over seeds)", percent=percent)
            parts.append(chart(spec, f"heatmap of {metric}", wide=len(columns_of_map) > 5))
    return side_by_side(*parts)


def _sweep_curves(results: SweepResults, groups: dict[tuple[Any, ...], list[dict[str, Any]]]) -> str:
    """MA, ASR and malicious share per round of each grid combination: the mean over its seeds,
    with the 95% confidence interval as a band."""
    runs = {labels: [read_rounds(RunDirectory(results.path / str(row["run"]))) for row in group]
            for labels, group in groups.items()}
    parts = []
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
            parts.append(chart(charts.curves(series, f"{name} per round (mean, 95% CI over seeds)", bands=bands),
                               f"{name} per round"))
    return side_by_side(*parts)


def _game_section(game: dict[str, Any]) -> str:
    costs = " less the attacker's costs, plus the defender's" if any((game.get("costs") or {}).values()) else ""
    body = chart(charts.heatmap(game["payoff"], game["attacker_labels"], game["defender_labels"], "attacker",
                                "defender", f"Attacker utility ASR x 1[MA > {game['ma_min']}]{costs}"),
                 "payoff matrix")
    body += table(["attacker strategy", "probability"],
                  [[a, f"{p:.3f}"] for a, p in zip(game["attacker_labels"], game["attacker_strategy"], strict=True)])
    body += table(["defender strategy", "probability"],
                  [[d, f"{p:.3f}"] for d, p in zip(game["defender_labels"], game["defender_strategy"], strict=True)])
    return body + f"<p>Game value (attacker's expected utility): {100 * game['value']:.2f} %</p>"


def sweep_report(path: Path) -> str:
    """The HTML report of one sweep directory."""
    results = read_sweep_results(path)
    return page(f"Sweep {results.name}", sweep_sections(results))


def _is_run(path: Path) -> bool:
    return (path / METRICS_FILE).exists() or (path / SUMMARY_FILE).exists()


def write_report(path: Path, out: Path | None = None, more: Sequence[Path] = ()) -> Path:
    """Write the report of a sweep directory (it has sweep.yaml) or a run directory (it has
    metrics.jsonl), or with ``more`` run directories the comparison of them all; returns the
    file written (default: report.html inside ``path``)."""
    if more:
        if not_runs := [p for p in (path, *more) if not _is_run(p)]:
            raise FileNotFoundError(f"{not_runs[0]}: not a run directory (no metrics.jsonl); several directories "
                                    "are compared as runs")
        text = comparison_report([path, *more])
    elif (path / SWEEP_FILE).exists():
        text = sweep_report(path)
    elif _is_run(path):
        text = run_report(path)
    else:
        raise FileNotFoundError(f"{path}: neither a sweep directory (sweep.yaml) nor a run directory (metrics.jsonl)")
    target = out or path / REPORT_FILE
    write_atomic(target, text)
    return target
