#!/usr/bin/env python
"""The reference attack x defense matrix, from its (partly) finished sweep directory.

Reads every finished cell of the sweep (scenarios/reference/matrix.sweep.yaml), rewrites the
sweep's tables (sweep.csv, sweep_ci.csv, sweep.md) and writes

    matrix.md          defenses x attacks; each cell MA / ASR / recall / FPR / malicious share,
                       mean ± 95% confidence half-width over the finished seeds
    matrix-asr.png     heat map of the mean final ASR (backdoor attacks)
    matrix-ma.png      heat map of the mean final MA

and puts matrix.md between the `<!-- matrix:start -->` and `<!-- matrix:end -->` lines of
EXPERIMENTS.md (of --page; with another --out, only when --page is given).

Runs nothing: `fedsec sweep scenarios/reference/matrix.sweep.yaml --out results/matrix` runs
(and resumes) the cells.

    .venv/bin/python scripts/reference_matrix.py
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from fedsec.experiments.figures import heatmap
from fedsec.experiments.grid import load_sweep_file
from fedsec.experiments.sweep import plan
from fedsec.experiments.table import format_values, group_rows, write_tables
from fedsec.results import write_atomic

ROOT = Path(__file__).resolve().parents[1]
CELL_METRICS = ("ma", "asr", "recall", "fpr", "malicious_share")
PENDING = "…"
BLOCK_START, BLOCK_END = "<!-- matrix:start -->\n", "<!-- matrix:end -->"


def replace_block(page: Path, block: str) -> None:
    """Rewrite the part of ``page`` between its matrix markers with ``block``, nothing else."""
    text = page.read_text()
    if BLOCK_START not in text or BLOCK_END not in text:
        raise SystemExit(f"{page}: no {BLOCK_START.strip()} ... {BLOCK_END} block")
    head, rest = text.split(BLOCK_START, 1)
    write_atomic(page, head + BLOCK_START + block + BLOCK_END + rest.split(BLOCK_END, 1)[1])


def matrix_markdown(groups: dict[tuple[str, str], list[dict]], attacks: list[str], defenses: list[str],
                    seeds: int) -> str:
    """Defenses as rows, attacks as columns; a cell with fewer than ``seeds`` finished runs says
    how many it has, a cell with none shows ``…``."""
    lines = ["| defense | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
    for defense in defenses:
        cells = []
        for attack in attacks:
            runs = groups.get((attack, defense), [])
            if not runs:
                cells.append(PENDING)
                continue
            text = " / ".join(format_values([run.get(m) for run in runs], m) for m in CELL_METRICS)
            cells.append(text + (f" ({len(runs)} of {seeds} seeds)" if len(runs) < seeds else ""))
        lines.append(f"| `{defense}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_matrix(groups: dict[tuple[str, str], list[dict]], attacks: list[str], defenses: list[str],
                metric: str) -> np.ndarray:
    """(defenses, attacks) means of ``metric``; NaN where no run recorded it."""
    shown = np.full((len(defenses), len(attacks)), np.nan)
    for i, defense in enumerate(defenses):
        for j, attack in enumerate(attacks):
            values = [run[metric] for run in groups.get((attack, defense), []) if run.get(metric) is not None]
            if values:
                shown[i, j] = statistics.fmean(float(v) for v in values)
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, default=ROOT / "scenarios/reference/matrix.sweep.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "results/matrix", help="the sweep directory")
    parser.add_argument("--page", type=Path, default=None,
                        help="page whose matrix block is rewritten (default: EXPERIMENTS.md, unless --out is given)")
    args = parser.parse_args()
    page = args.page or (ROOT / "EXPERIMENTS.md" if args.out.resolve() == ROOT / "results/matrix" else None)

    spec = load_sweep_file(args.sweep)
    attack_axis, defense_axis = spec.axes
    attacks, defenses = list(attack_axis.labels), list(defense_axis.labels)
    planned = plan(spec, args.out)
    rows = write_tables([attack_axis.key, defense_axis.key], planned, args.out)
    groups = group_rows(rows, [attack_axis.key, defense_axis.key])
    seeds = len(spec.seeds or (None,))
    finished = sum(len(runs) for runs in groups.values())

    caption = (f"{finished} of {len(planned)} runs finished. Each cell: MA / ASR / recall / FPR / malicious "
               "share (%), final round, mean ± 95% confidence half-width (Student's t) over seeds; "
               "n/a: the rule never rejects; –: untargeted attack (no ASR).")
    block = matrix_markdown(groups, attacks, defenses, seeds) + "\n" + caption + "\n"
    write_atomic(args.out / "matrix.md", block)
    if page is not None:
        replace_block(page, block)
    for metric, title in (("asr", "final ASR (%)"), ("ma", "final MA (%)")):
        image = heatmap(mean_matrix(groups, attacks, defenses, metric), defenses, attacks, "defense", "attack",
                        f"Reference matrix: {title}, mean over seeds")
        write_atomic(args.out / f"matrix-{metric}.png", image)
    print((args.out / "matrix.md").read_text())


if __name__ == "__main__":
    main()
