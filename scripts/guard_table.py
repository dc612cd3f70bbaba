"""The "double-edged sword" table (seed 000): runtime guard chains in front of finished runs' models.

For each run directory (a finished ``fedsec run`` with its ``model.pt``), the chains of the
``runtime_guards`` section of a scenario file (``--guards``) are fitted on the run's clean training sample and measured on its test
set exactly as the run's own ``runtime_guards`` audit measures them after the last round; the
records go to ``guards-table.jsonl`` in the run directory and one Markdown row per run and chain
is printed (MA and ASR of the model without guards, then FRR, FAR, SDA, SASR in %, with the seed's
STRIP+BDMAE figures beside the chain named ``strip-bdmae``).

Usage: python scripts/guard_table.py RUN_DIR... [--guards scenarios/guards/sword-badnets.yaml]
       [--test-samples 2000] [--chains strip strip-bdmae ...] [--device auto]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fedsec.audit import RoundView
from fedsec.commands.watermark import load_model
from fedsec.data.datasets import load_dataset
from fedsec.guards.audit import RuntimeGuardsAudit
from fedsec.results import MODEL_FILE, SCENARIO_FILE
from fedsec.scenario import load_scenario
from fedsec.training import resolve_device

SEED_000 = {"badnets": (91.6, 0.0), "sig": (92.3, 1.6), "wanet": (80.8, 13.1)}
"""Seed 000's STRIP+BDMAE figures (SDA %, SASR %) per attack, all from ASR > 90%."""
RECORD_FILE = "guards-table.jsonl"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--guards", type=Path, default=Path("scenarios/guards/sword-badnets.yaml"),
                        help="scenario file whose runtime_guards section gives the chains")
    parser.add_argument("--test-samples", type=int, default=None,
                        help="first test images measured (default: the run's data.test_samples, or all)")
    parser.add_argument("--chains", nargs="+", default=None, help="chains measured (default: all of the section)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()
    section = load_scenario(args.guards).runtime_guards
    if section is None:
        parser.error(f"{args.guards} has no runtime_guards section")
    if args.chains is not None:
        unknown = set(args.chains) - set(section.chains)
        if unknown:
            parser.error(f"no chain {sorted(unknown)} in {args.guards}")
        section = section.model_copy(update={"chains": {k: v for k, v in section.chains.items() if k in args.chains}})
    device = resolve_device(args.device)
    print("| attack | MA | ASR | chain | FRR | FAR | SDA | SASR | seed 000 SDA / SASR | s per 1,000 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        scenario = load_scenario(run / SCENARIO_FILE)
        data = scenario.data if args.test_samples is None else scenario.data.model_copy(
            update={"test_samples": args.test_samples})
        scenario = scenario.model_copy(update={"runtime_guards": section, "data": data})
        dataset = load_dataset(scenario.data.dataset, scenario.data.root)
        model = load_model(run / MODEL_FILE, dataset, device)
        audit = RuntimeGuardsAudit(section, scenario, dataset, device)
        view = RoundView(scenario.rounds, True, model, torch.zeros(1), {}, frozenset(), run)
        records = audit(view)
        with (run / RECORD_FILE).open("w") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
        attack = scenario.attack.data.name if scenario.attack and scenario.attack.data else "none"
        for r in records:
            seed = SEED_000.get(attack) if r["chain"] == "strip-bdmae" else None
            beside = f"{seed[0]} / {seed[1]}" if seed else ""
            print(f"| {attack} | {percent(r['ma'])} | {percent(r.get('asr'))} | {r['chain']} | {percent(r['frr'])} | "
                  f"{percent(r.get('far'))} | {percent(r['sda'])} | {percent(r.get('sasr'))} | {beside} | "
                  f"{r['seconds_per_1000']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
