"""The "double-edged sword" table (seed 000): runtime guard chains in front of finished runs' models.

For each run directory (a finished ``fedsec run`` with its ``model.pt``), the chains of the
``runtime_guards`` section of a scenario file (``--guards``) are fitted on the run's clean training sample and measured on its test
set exactly as the run's own ``runtime_guards`` audit measures them after the last round; the
records are appended to ``guards-table.jsonl`` in the run directory and one Markdown row per run
and chain is printed (MA and ASR of the model without guards, then FRR, FAR, SDA, SASR in %, with
the seed's STRIP+BDMAE figures beside the chain named ``strip-bdmae``, and each guard's ROC AUC
separating triggered from clean inputs).

With ``--breakdown``, each chain is run once more on the clean test inputs, guard by guard, and a
second table says where clean accuracy goes: per guard, the clean inputs it rejects (and how many
of them the model had right), and, of those it lets through, how many its purification turns from
right to wrong and from wrong to right (the purifiers draw fresh random masks on this pass).

Usage: python scripts/guard_table.py RUN_DIR... [--guards scenarios/guards/sword-badnets.yaml]
       [--test-samples 2000] [--chains strip strip-bdmae ...] [--device auto] [--breakdown]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from fedsec.audit import RoundView
from fedsec.commands.inputs import load_model
from fedsec.data.datasets import load_dataset
from fedsec.guards.audit import RuntimeGuardsAudit
from fedsec.guards.base import GuardChain
from fedsec.results import MODEL_FILE, SCENARIO_FILE
from fedsec.scenario import load_scenario
from fedsec.training import resolve_device

SEED_000 = {"badnets": (91.6, 0.0), "sig": (92.3, 1.6), "wanet": (80.8, 13.1)}
"""Seed 000's STRIP+BDMAE figures (SDA %, SASR %) per attack, all from ASR > 90%."""
RECORD_FILE = "guards-table.jsonl"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def breakdown(chain: GuardChain, model: nn.Module, x: Tensor, y: Tensor, classify) -> list[dict[str, int]]:  # noqa: ANN001
    """Per guard of a fitted ``chain`` on clean inputs ``x`` (labels ``y``): inputs it saw, rejected,
    rejected that the model had right, and among those it passed on, right -> wrong and wrong -> right."""
    rejected = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    inputs = x.clone()
    rows = []
    for guard in chain.guards:
        alive = (~rejected).nonzero().squeeze(1)
        right = classify(model, inputs[alive]) == y[alive]
        verdict = guard(model, inputs[alive])
        after = classify(model, verdict.inputs) == y[alive]
        passed = ~verdict.rejected
        rows.append({"guard": guard.params.name, "seen": len(alive), "rejected": int(verdict.rejected.sum()),
                     "rejected_right": int((verdict.rejected & right).sum()),
                     "right_to_wrong": int((passed & right & ~after).sum()),
                     "wrong_to_right": int((passed & ~right & after).sum())})
        rejected[alive] = verdict.rejected
        inputs[alive] = verdict.inputs
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--guards", type=Path, default=Path("scenarios/guards/sword-badnets.yaml"),
                        help="scenario file whose runtime_guards section gives the chains")
    parser.add_argument("--test-samples", type=int, default=None,
                        help="first test images measured (default: the run's data.test_samples, or all)")
    parser.add_argument("--chains", nargs="+", default=None, help="chains measured (default: all of the section)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--breakdown", action="store_true",
                        help="also say, per guard, where clean accuracy is lost (rejections, purification)")
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
    print("| attack | MA | ASR | chain | FRR | FAR | SDA | SASR | seed 000 SDA / SASR | AUC per guard | s per 1,000 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
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
        with (run / RECORD_FILE).open("a") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
        attack = scenario.attack.data.name if scenario.attack and scenario.attack.data else "none"
        for r in records:
            seed = SEED_000.get(attack) if r["chain"] == "strip-bdmae" else None
            beside = f"{seed[0]} / {seed[1]}" if seed else ""
            auc = ", ".join("–" if a is None else f"{a:.3f}" for a in r.get("auc") or [])
            print(f"| {attack} | {percent(r['ma'])} | {percent(r.get('asr'))} | {r['chain']} | {percent(r['frr'])} | "
                  f"{percent(r.get('far'))} | {percent(r['sda'])} | {percent(r.get('sasr'))} | {beside} | {auc} | "
                  f"{r['seconds_per_1000']:.2f} |", flush=True)
        if args.breakdown:
            n = len(audit.y)
            print(f"\nwhere clean accuracy goes ({attack}, {n} clean test inputs; % of them):\n")
            print("| chain | guard | seen | rejected | rejected, model right | passed, right → wrong | "
                  "passed, wrong → right |")
            print("|---|---|---|---|---|---|---|")
            for name, chain in audit.chains.items():
                rows = breakdown(chain, model, audit.x, audit.y, lambda m, x: audit._classify(m, x))
                with (run / RECORD_FILE).open("a") as out:
                    out.write(json.dumps({"chain": name, "breakdown": rows, "clean_inputs": n}) + "\n")
                for row in rows:
                    print(f"| {name} | {row['guard']} | {row['seen']} | {percent(row['rejected'] / n)} | "
                          f"{percent(row['rejected_right'] / n)} | {percent(row['right_to_wrong'] / n)} | "
                          f"{percent(row['wrong_to_right'] / n)} |", flush=True)


if __name__ == "__main__":
    main()
