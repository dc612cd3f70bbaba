"""Watermarks after extraction: one row per watermark scheme and extraction attack, over seeds.

Reads run directories (or sweep directories: every cell under ``cells/``) of scenarios with a
``watermark`` and an ``extraction`` section, as the committed ``results/extraction-*`` sweeps, and
prints, per scheme (its name, with the parameters that differ from the scheme's defaults, and a
sweep cell's other grid values) and attack: seeds, the victim's MA and watermark success, the copy's
accuracy, fidelity and watermark success (mean ± standard deviation over seeds), copies verified,
and PRADA's alarm per seed. Watermark success is the scheme's statistic as a share: the trigger
match of black-box schemes (chance 1/C), 1 − BER or the detection rate of white-box ones (chance
1/2). A run whose victim ended below ``--min-ma`` accuracy (default 50%: a model no one would steal)
is listed below the table, not averaged.

    python scripts/extraction_table.py results/extraction-keyed results/extraction-schemes results/extraction-ewe
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from fedsec.results import read_jsonl
from fedsec.watermark import WATERMARKS

RECORDS = "extraction.jsonl"


def run_dirs(paths: Iterable[Path]) -> list[Path]:
    """The run directories under ``paths``: each path itself, or its sweep's cells."""
    found = []
    for path in paths:
        cells = path / "cells"
        candidates = sorted(cells.iterdir()) if cells.is_dir() else [path]
        found += [c for c in candidates if (c / RECORDS).is_file() and (c / "summary.json").is_file()]
    return found


def scheme_label(scheme: dict[str, Any]) -> str:
    """``ewe (weight 0.0, perturbation_steps 0)``: the name and the parameters off their defaults."""
    defaults = WATERMARKS.get(scheme["name"]).Params(name=scheme["name"]).model_dump()
    changed = [f"{k} {v}" for k, v in scheme.items() if k != "name" and defaults.get(k) != v]
    return scheme["name"] + (f" ({', '.join(changed)})" if changed else "")


def grid_label(run: Path) -> str:
    """``, schedule.start_round 3``: a sweep cell's grid values other than the rounds and the scheme
    (nothing for a run outside a sweep)."""
    cell = run / "cell.json"
    grid = json.loads(cell.read_text())["grid"] if cell.is_file() else {}
    return "".join(f", {k.removeprefix('watermark.')} {v}" for k, v in grid.items()
                   if k not in ("rounds", "watermark.scheme"))


def success(record: dict[str, Any], prefix: str) -> float | None:
    """The watermark's statistic in ``record`` (``prefix`` wm_ or victim_wm_) as a success share."""
    if f"{prefix}match" in record:
        return record[f"{prefix}match"]
    if f"{prefix}wdr" in record:
        return record[f"{prefix}wdr"]
    if f"{prefix}ber" in record:
        return 1.0 - record[f"{prefix}ber"]
    return None


def spread(values: Sequence[float]) -> str:
    """``mean ± std`` in percent (std over seeds; none for one value)."""
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def rows(runs: Sequence[Path], min_ma: float) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[str]]:
    """Records grouped by (scheme label, attack), each with the run's MA, seed and victim figures;
    and one line per run left out."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    left_out = []
    for run in runs:
        scenario = yaml.safe_load((run / "scenario.yaml").read_text())
        summary = json.loads((run / "summary.json").read_text())
        label = scheme_label(scenario["watermark"]["scheme"]) + grid_label(run)
        if summary["ma"] < min_ma:
            left_out.append(f"{label} seed {scenario['seed']} ({100 * summary['ma']:.1f}%)")
            continue
        records = read_jsonl(run / RECORDS)
        last = max(r["round"] for r in records)
        for record in records:
            if record["round"] == last and record["attack"] != "benign":
                groups.setdefault((label, record["attack"]), []).append(
                    {**record, "ma": summary["ma"], "seed": scenario["seed"]})
    return groups, left_out


def table(groups: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    lines = ["| scheme | attack | seeds | victim MA | victim watermark | copy accuracy | fidelity | copy watermark "
             "| copies verified | PRADA alarm at query |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (label, attack), records in sorted(groups.items()):
        records = sorted(records, key=lambda r: r["seed"])
        alarms = ", ".join("never" if r.get("prada_detected_at") is None else str(r["prada_detected_at"])
                           for r in records)
        lines.append(
            f"| {label} | {attack} | {len(records)} | {spread([r['ma'] for r in records])} "
            f"| {spread([success(r, 'victim_wm_') for r in records])} "
            f"| {spread([r['accuracy'] for r in records])} | {spread([r['fidelity'] for r in records])} "
            f"| {spread([success(r, 'wm_') for r in records])} "
            f"| {sum(r['wm_verified'] for r in records)} of {len(records)} | {alarms} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", type=Path, nargs="+", help="run or sweep directories")
    parser.add_argument("--min-ma", type=float, default=0.5, help="victims below this MA (0..1) are left out")
    args = parser.parse_args()
    runs = run_dirs(args.paths)
    if not runs:
        raise SystemExit("no run with extraction records under " + ", ".join(map(str, args.paths)))
    groups, left_out = rows(runs, args.min_ma)
    print(table(groups))
    if left_out:
        print(f"\nLeft out, victim MA below {100 * args.min_ma:.0f}%: {'; '.join(left_out)}.")


if __name__ == "__main__":
    main()
