#!/usr/bin/env python
"""Acceptance tables of model inspection, from real federations with an ``inspection`` section.

Subcommands (each prints Markdown tables; a finished run under ``--out`` whose clients did not
fail is found again and not re-run, so an interrupted table resumes):

``badnets``
    ``scenarios/inspection/badnets-inspect.yaml`` (BadNets 5x5 white patch -> class 0, 30
    rounds) with one inspection of the final global model on ``--clean-samples`` clean training
    images: each inspector's verdict (flagged, score / threshold, suspected targets, whether class
    0 is named, IoU of the reconstructed mask with the true patch: pixels >= 0.5, and the mask's
    k largest pixels with k the patch's area), its queries and seconds; then the repair's MA and
    ASR before and after, on the test set.
``clean``
    ``scenarios/inspection/clean-inspect.yaml`` (attack-free, 30 rounds) once per ``--seeds``:
    inspector x seed, flagged or not, score / threshold, seconds; and the count of flagged models
    per inspector.
``screen``
    ``scenarios/defenses/fedavg-boosted-badnets.yaml`` with the weight-space screening stage as
    its only defense: MA, ASR, and recall and FPR over the run and over the rounds after the
    stage's warm-up. ``--attack-from N`` starts the attack in round N (the stage assumes its
    warm-up rounds attack-free).
``repair``
    Fine-pruning at each ``--margins`` on a finished run's final model (no federation is run), on
    the same seeded clean sample as the run's own audit and a generator seeded as the audit's for
    the last round (the audit's own has been advanced by its inspectors first, so the validation
    split and the fine-tuning order differ from the run's repair): pruned channels, MA and ASR
    before and after.

Usage:
    python scripts/inspection_table.py badnets [--clean-samples 1000] [--methods neural-cleanse ...]
    python scripts/inspection_table.py clean [--seeds 0 1 2 3 4] [--rounds 30] [--no-run]
    python scripts/inspection_table.py screen [--attack-from 4]
    python scripts/inspection_table.py repair RUN_DIR [--margins 0.04 0.1 0.2] [--clean-samples 1000]

Every subcommand but ``repair`` takes ``--out`` (default ``runs/inspection``), ``--set key=value``
overrides passed on to ``fedsec run``, and ``--no-run`` (tables of the runs already finished only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsec.results import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
BADNETS = "scenarios/inspection/badnets-inspect.yaml"
CLEAN = "scenarios/inspection/clean-inspect.yaml"
BOOSTED = "scenarios/defenses/fedavg-boosted-badnets.yaml"

INSPECTOR_SPECS: dict[str, str] = {
    "neural-cleanse": "{name: neural-cleanse, epochs: 20}",
    "tabor": "{name: tabor, epochs: 20}",
    "restore": "{name: restore}",
    "deep-inspect": "{name: deep-inspect}",
    "weight-space": "{name: weight-space, references: 8}",
}
"""The inspectors of the BadNets run, as in scenarios/inspection/clean-inspect.yaml."""
HIGH_IS_SUSPECT = {"restore"}
"""Inspectors whose per-class statistic is largest for the most suspect class (REStore's log10
probabilities); the others' is smallest (mask norms, TABOR's metric, perturbation norms,
log-likelihoods)."""


def finished_run(parent: Path) -> Path | None:
    """The latest run directory under ``parent`` with a summary and no failed client, or None."""
    for run in sorted(parent.glob("*"), reverse=True):
        summary = run / "summary.json"
        if summary.exists() and not json.loads(summary.read_text()).get("failed"):
            return run
    return None


def run_scenario(scenario: str, parent: Path, overrides: Sequence[str], run: bool = True) -> Path | None:
    """The run directory of ``scenario`` with ``overrides`` under ``parent``, running it unless
    a finished one is there (or, when ``run`` is false, None)."""
    found = finished_run(parent)
    if found is not None:
        print(f"using {found.relative_to(ROOT) if found.is_relative_to(ROOT) else found}", file=sys.stderr)
        return found
    if not run:
        return None
    command = [sys.executable, "-m", "fedsec", "run", scenario, "--quiet", f"--set=output.dir={parent}",
               *(f"--set={o}" for o in overrides)]
    print("running " + " ".join(command[2:]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    found = finished_run(parent)
    if found is None:
        raise SystemExit(f"{scenario}: no finished run under {parent} (clients failed?)")
    return found


def percent(value: float | None) -> str:
    """A rate 0..1 as a percentage with one decimal, "–" for None."""
    return "–" if value is None else f"{100 * value:.1f}%"


def number(value: float | None, digits: int = 2) -> str:
    """A figure with ``digits`` decimals, "–" for None."""
    return "–" if value is None else f"{value:.{digits}f}"


def final_records(run: Path) -> list[dict[str, Any]]:
    """The inspection and repair records of the run's last inspected round."""
    records = read_jsonl(run / "inspection.jsonl")
    last = max(r["round"] for r in records)
    return [r for r in records if r["round"] == last]


def true_target_rank(record: dict[str, Any]) -> str:
    """Rank (1 = most suspect) of the true target by the record's per-class statistic, "–" without one."""
    scores, target = record.get("class_scores") or [], record.get("true_target")
    if target is None or len(scores) <= target:
        return "–"
    sign = -1 if record["method"] in HIGH_IS_SUSPECT else 1
    return f"{1 + sum(sign * s < sign * scores[target] for s in scores)} of {len(scores)}"


def print_inspections(records: list[dict[str, Any]]) -> None:
    """The inspection records as one Markdown table."""
    print("| inspector | access | flagged | score / threshold | suspected targets | true target named "
          "| its rank | IoU (mask >= 0.5) | IoU (k largest) | true target's IoU (>= 0.5 / k largest) "
          "| queries | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        if r["kind"] != "inspection":
            continue
        named = "–" if r["target_found"] is None else ("yes" if r["target_found"] else "no")
        print(f"| {r['method']} | {r['access']} | {'yes' if r['flagged'] else 'no'} | "
              f"{number(r['score'])} / {number(r['threshold'])} | {r['targets'] or '–'} | {named} | "
              f"{true_target_rank(r)} | {number(r.get('trigger_iou'))} | {number(r.get('trigger_iou_top'))} | "
              f"{number(r.get('target_trigger_iou'))} / {number(r.get('target_trigger_iou_top'))} | {r['queries']:,} | "
              f"{r['seconds']:.0f}{' + ' + format(r['reference_seconds'], '.0f') if 'reference_seconds' in r else ''} |")


REPAIR_HEADER = ("| repair | pruned channels | server's clean accuracy before / pruned / after "
                 "| MA before → after | ASR before → after | s |\n|---|---|---|---|---|---|")


def repair_row(r: dict[str, Any], label: str = "") -> str:
    """One repair record as a row of :data:`REPAIR_HEADER`'s table."""
    return (f"| {r['method']}{label} | {len(r['pruned'])} | {percent(r['accuracy_before'])} / "
            f"{percent(r['accuracy_pruned'])} / {percent(r['accuracy_after'])} | {percent(r['ma_before'])} → "
            f"{percent(r['ma'])} | {percent(r.get('asr_before'))} → {percent(r.get('asr'))} | {r['seconds']:.0f} |")


def badnets(args: argparse.Namespace) -> None:
    """The ``badnets`` subcommand (see the module docstring)."""
    methods = "[" + ", ".join(INSPECTOR_SPECS[m] for m in args.methods) + "]"
    overrides = ["inspection.every=null", f"inspection.clean_samples={args.clean_samples}",
                 f"inspection.methods={methods}", *args.set]
    run = run_scenario(BADNETS, args.out / "badnets", overrides, not args.no_run)
    if run is None:
        raise SystemExit("no finished BadNets run")
    summary = json.loads((run / "summary.json").read_text())
    print(f"{run.name}: {summary['rounds']} rounds, MA {percent(summary['ma'])}, ASR {percent(summary['asr'])}\n")
    records = final_records(run)
    print_inspections(records)
    print()
    print(REPAIR_HEADER)
    for r in records:
        if r["kind"] == "repair":
            print(repair_row(r))


def clean(args: argparse.Namespace) -> None:
    """The ``clean`` subcommand."""
    found = {seed: run_scenario(CLEAN, args.out / "clean" / f"seed-{seed}",
                                [f"seed={seed}", f"rounds={args.rounds}", *args.set], not args.no_run)
             for seed in args.seeds}
    runs = {seed: run for seed, run in found.items() if run is not None}
    by_method: dict[str, dict[int, dict[str, Any]]] = {}
    for seed, run in runs.items():
        for r in final_records(run):
            by_method.setdefault(r["method"], {})[seed] = r
    print("| inspector | " + " | ".join(f"seed {s}" for s in runs) + " | flagged |")
    print("|---|" + "---|" * len(runs) + "---|")
    ma = " | ".join(percent(json.loads((run / "summary.json").read_text())["ma"]) for run in runs.values())
    print(f"| (final MA) | {ma} | |")
    for method, cells in by_method.items():
        row = []
        for seed in runs:
            r = cells.get(seed)
            references = f" + {r['reference_seconds']:.0f} s references" if r and "reference_seconds" in r else ""
            row.append("–" if r is None else f"{'**flagged**' if r['flagged'] else 'no'}, "
                       f"{number(r['score'])} / {number(r['threshold'])}, {r['seconds']:.0f} s{references}")
        flagged = sum(r["flagged"] for r in cells.values())
        print(f"| {method} | " + " | ".join(row) + f" | {flagged} of {len(cells)} |")


def screen(args: argparse.Namespace) -> None:
    """The ``screen`` subcommand."""
    overrides = ["defenses=[{name: weight-space}]", "name=weight-space-boosted-badnets"]
    label = "attack from round 1"
    parent = args.out / "screen" / "from-1"
    if args.attack_from > 1:
        overrides.append(f"attack.schedule={{start_round: {args.attack_from}}}")
        label, parent = f"attack from round {args.attack_from}", args.out / "screen" / f"from-{args.attack_from}"
    run = run_scenario(BOOSTED, parent, [*overrides, *args.set], not args.no_run)
    if run is None:
        raise SystemExit("no finished screening run")
    summary = json.loads((run / "summary.json").read_text())
    warmup = next(d.get("warmup_rounds", 3) for d in _resolved_defenses(run) if d["name"] == "weight-space")
    after = {k: 0 for k in ("tp", "fp", "fn", "tn")}
    for r in read_jsonl(run / "metrics.jsonl"):
        if r["round"] > warmup:
            for k in after:
                after[k] += r.get(k) or 0
    recall = after["tp"] / (after["tp"] + after["fn"]) if after["tp"] + after["fn"] else None
    fpr = after["fp"] / (after["fp"] + after["tn"]) if after["fp"] + after["tn"] else None
    print(f"{run.name} ({label}; warm-up {warmup} rounds)\n")
    print("| defense | MA | ASR (final / max) | recall | FPR | recall after warm-up | FPR after warm-up |")
    print("|---|---|---|---|---|---|---|")
    print(f"| weight-space | {percent(summary['ma'])} | {percent(summary['asr'])} / {percent(summary['max_asr'])} | "
          f"{percent(summary['recall'])} | {percent(summary['fpr'])} | {percent(recall)} "
          f"({after['tp']} of {after['tp'] + after['fn']}) | {percent(fpr)} ({after['fp']} of {after['fp'] + after['tn']}) |")


def _resolved_defenses(run: Path) -> list[dict[str, Any]]:
    """The ``defenses`` section of the run's resolved scenario."""
    import yaml

    return yaml.safe_load((run / "scenario.yaml").read_text()).get("defenses") or []


def repair(args: argparse.Namespace) -> None:
    """The ``repair`` subcommand."""
    import torch

    from fedsec.audit import RoundView
    from fedsec.commands.inputs import load_model
    from fedsec.data.datasets import load_dataset
    from fedsec.inspection import InspectionConfig
    from fedsec.inspection.audit import InspectionAudit
    from fedsec.results import MODEL_FILE, SCENARIO_FILE
    from fedsec.scenario import load_scenario
    from fedsec.training import resolve_device

    scenario = load_scenario(args.run / SCENARIO_FILE)
    device = resolve_device(args.device)
    dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    model = load_model(args.run / MODEL_FILE, dataset, device)
    print(f"{args.run.name}: fine-pruning on {args.clean_samples} clean training images, {args.epochs} epochs\n")
    print(REPAIR_HEADER, flush=True)
    for margin in args.margins:
        config = InspectionConfig.model_validate({
            "clean_samples": args.clean_samples, "methods": [{"name": "weight-space"}],  # not run: the repair only
            "repair": {"name": "fine-pruning", "margin": margin, "epochs": args.epochs}})
        audit = InspectionAudit(config, scenario, dataset, device)
        view = RoundView(scenario.rounds, True, model, torch.zeros(1), {}, frozenset(), args.run)
        # the audit's own generator for this round (InspectionAudit.__call__)
        generator = torch.Generator().manual_seed(scenario.seed * 1_000_003 + scenario.rounds)
        print(repair_row(audit.repaired(view, generator), f", margin {margin:g}"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, default=ROOT / "runs" / "inspection", help="parent of the run directories")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra fedsec run override (repeatable)")
    common.add_argument("--no-run", action="store_true", help="tables of the runs already finished only")
    p = sub.add_parser("badnets", parents=[common], help="inspection and repair at the end of the BadNets run")
    p.add_argument("--clean-samples", type=int, default=1000, help="clean training images the server holds")
    p.add_argument("--methods", nargs="+", choices=sorted(INSPECTOR_SPECS), default=list(INSPECTOR_SPECS))
    p.set_defaults(handler=badnets)
    p = sub.add_parser("clean", parents=[common], help="every inspector on attack-free global models")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=30)
    p.set_defaults(handler=clean)
    p = sub.add_parser("screen", parents=[common], help="weight-space screening in the boosted-BadNets run")
    p.add_argument("--attack-from", type=int, default=1, help="first attacked round")
    p.set_defaults(handler=screen)
    p = sub.add_parser("repair", help="fine-pruning margins on a finished run's model")
    p.add_argument("run", type=Path, help="finished run directory (model.pt, scenario.yaml)")
    p.add_argument("--margins", type=float, nargs="+", default=[0.04])
    p.add_argument("--clean-samples", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=repair)
    args = parser.parse_args()
    if hasattr(args, "out"):
        args.out = args.out.resolve()
    args.handler(args)


if __name__ == "__main__":
    main()
