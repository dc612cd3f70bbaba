#!/usr/bin/env python
"""Every defense against a set of attack scenarios: MA / ASR / recall / FPR in one Markdown table.

Each cell is a real ``fedsec run`` of an attack scenario with ``--set defenses=[...]`` (and the
root dataset FLTrust needs); finished runs are found again under ``--out`` and not re-run, so an
interrupted table resumes. ``--attack none`` is the attack-free federation (``attack=null``),
which gives each defense's false-positive rate and its MA cost against FedAvg.

    .venv/bin/python scripts/defense_table.py --attack none --attack badnets --rounds 20
    .venv/bin/python scripts/defense_table.py --attack badnets --attack model-replacement \
        --attack alie --attack sign-flip --rounds 15 --set evaluation.every=5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each defense with the settings used in the table (f = 1 Byzantine client per round of 10).
DEFENSES: dict[str, str] = {
    "fedavg": "[{name: fedavg}]",
    "median": "[{name: median}]",
    "trimmed-mean": "[{name: trimmed-mean, beta: 0.1}]",
    "krum": "[{name: krum, f: 1}]",
    "multi-krum": "[{name: multi-krum, f: 1}]",
    "bulyan": "[{name: bulyan, f: 1}]",
    "geometric-median": "[{name: geometric-median}]",
    "centered-clipping": "[{name: centered-clipping}]",
    "norm-clipping+dp": "[{name: norm-clipping}, {name: dp-noise, sigma: 0.001}]",
    "fltrust": "[{name: fltrust}]",
    "foolsgold": "[{name: foolsgold}]",
    "flame": "[{name: flame}]",
    "dnc": "[{name: dnc, f: 1}]",
    "signguard": "[{name: signguard}]",
    "crfl": "[{name: crfl, rho: 25.0, sigma: 0.001}]",
}
ATTACK_FREE = "none"
# Model replacement fires in round 10 (its attacker, client 0, is sampled in rounds 10, 17, 25
# and 29 with seed 0) and the run stops there, so the table shows the model it produced.
ATTACK_OVERRIDES: dict[str, list[str]] = {"model-replacement": ["rounds=10", "attack.schedule.single_shot=10"]}


def run_cell(attack: str, defense: str, rounds: int, out: Path, overrides: list[str]) -> Path:
    """The run directory of one (attack, defense) cell, running it unless it already finished."""
    parent = out / attack / defense
    finished = [d for d in sorted(parent.glob("*")) if (d / "summary.json").exists()]
    # A run whose clients failed (e.g. Ray's out-of-memory killer on a crowded machine) is not
    # the scenario's result: run the cell again.
    complete = [d for d in finished if not json.loads((d / "summary.json").read_text()).get("failed")]
    if complete:
        return complete[-1]
    scenario = "scenarios/fmnist-fedavg.yaml" if attack == ATTACK_FREE else f"scenarios/attacks/{attack}.yaml"
    command = [sys.executable, "-m", "fedsec", "run", scenario, "--quiet",
               f"--set=rounds={rounds}", f"--set=output.dir={parent}",
               f"--set=defenses={DEFENSES[defense]}", f"--set=name={attack}-{defense.replace('+', '-')}"]
    if defense == "fltrust":
        command.append("--set=root_data={samples: 100}")
    extra = ATTACK_OVERRIDES.get(attack, []) + overrides
    command += [f"--set={o}" for o in extra]
    print(f"running {attack} x {defense}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return run_cell(attack, defense, rounds, out, overrides)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack", action="append", required=True,
                        help=f"attack scenario name under scenarios/attacks/, or '{ATTACK_FREE}' (repeatable)")
    parser.add_argument("--defense", action="append", choices=sorted(DEFENSES), help="default: all")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "defense-table")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="scenario override for every cell, e.g. evaluation.every=5 (repeatable)")
    args = parser.parse_args()
    defenses = args.defense or list(DEFENSES)
    header = ["defense"] + [f"{a}: MA / ASR / recall / FPR (%)" for a in args.attack]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for defense in defenses:
        cells = []
        for attack in args.attack:
            summary = json.loads((run_cell(attack, defense, args.rounds, args.out, args.overrides) / "summary.json").read_text())
            cells.append(" / ".join(percent(summary.get(k)) for k in ("ma", "asr", "recall", "fpr")))
        print(f"| {defense} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
