"""Clean-label targeted poisoning in federated last-layer fine-tuning: one row per replayed setting.

Reads the JSON files ``scripts/poison_frogs_replay.py --json`` writes (one per threat model, attack,
server defense and client sanitizer, each over target seeds: one target instance per federation)
and prints a Markdown table: the poisons each poisoned client holds, targets flipped to the
attacker's class by the final model, with a 95% Wilson interval, by the pre-trained model, the
final MA (mean and range over the federations), what the honest clients' sanitizer removed (share
of the poison rows and of the clean rows it saw, over clients and rounds), and the server's recall
and false-positive rate over the rounds' updates ("n/a" for defenses that never reject).

    python scripts/clean_label_table.py results/clean-label/*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from scipy.stats import binomtest

from fedsec.attacks import build_data_attack
from fedsec.defenses import build_pipeline
from fedsec.scenario import load_scenario

ORDER = {
    "threat": ["malicious clients", "data supply"],
    "attack": ["none", "poison-frogs", "convex-polytope", "bullseye-polytope"],
    "defenses": ["fedavg", "median", "flame"],
    "sanitizer": ["none", "spectral-signatures", "activation-clustering"],
}


def rank(result: dict[str, Any]) -> tuple[int, ...]:
    """Sort key: threat and attack, poisons per client, defense and sanitizer in ORDER's order (unknown
    values last)."""
    setting = result["setting"]
    order = [ORDER[k].index(setting[k]) if setting[k] in ORDER[k] else len(ORDER[k]) for k in ORDER]
    return (*order[:2], poisons(result), *order[2:])


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%} ({part}/{whole})" if whole else "–"


def poisons(result: dict[str, Any]) -> int:
    """Poisons per poisoned client (0 without an attack)."""
    if result["setting"]["attack"] == "none":
        return 0
    attack = build_data_attack(load_scenario(result["scenario"], result["overrides"]).data_attack)
    return attack.poisons_per_target * attack.params.num_targets


def budget(result: dict[str, Any]) -> str:
    """Poisons per poisoned client: crafted every round by a malicious client, or once by the supply."""
    count = poisons(result)
    if not count:
        return "–"
    return f"{count}, once" if result["setting"]["threat"] == "data supply" else f"{count} a round"


def row(result: dict[str, Any]) -> str:
    runs, setting = result["runs"], result["setting"]
    targets = sum(r["targets"] for r in runs)
    flipped = sum(r["flipped"] for r in runs)
    low, high = binomtest(flipped, targets).proportion_ci(method="wilson")
    mas = [100 * r["ma"] for r in runs]
    sanitized = setting["sanitizer"] != "none"
    removal = [share(sum(r[f"{k}_removed"] for r in runs), sum(r[f"{k}_held"] for r in runs)) if sanitized else "–"
               for k in ("poisons", "clean")]
    if build_pipeline([{"name": name} for name in setting["defenses"].split("+")]).rejects:
        rates = [share(sum(r[f"{k}_rejected"] for r in runs), sum(r[f"{k}_updates"] for r in runs))
                 for k in ("malicious", "benign")]
    else:
        rates = ["n/a", "n/a"]
    attack = setting["attack"] + (" (exact collision)" if result["exact"] else "")
    return (f"| {setting['threat']} | {attack} | {budget(result)} | {setting['defenses']} | {setting['sanitizer']} "
            f"| {flipped}/{targets} ({flipped / targets:.0%}) | {low:.0%}–{high:.0%} "
            f"| {sum(r['flipped_pretrained'] for r in runs)}/{targets} "
            f"| {statistics.mean(mas):.1f} ({min(mas):.1f}–{max(mas):.1f}) "
            f"| {removal[0]} | {removal[1]} | {rates[0]} | {rates[1]} |")


def table(paths: list[Path]) -> str:
    results = sorted((json.loads(p.read_text()) for p in paths), key=rank)
    lines = [
        "| poisons from | attack | poisons per client | server | client sanitizer | targets flipped | 95% CI "
        "| pre-trained model "
        "| MA % (range) | poison rows removed | clean rows removed | server recall | server FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *map(row, results),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files of scripts/poison_frogs_replay.py --json")
    args = parser.parse_args(argv)
    print(table(args.results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
