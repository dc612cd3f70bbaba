"""PRADA on many benign query streams and on every extraction attack's stream, for several δ.

The victim is the final global model of a run directory (``--run DIR``: its ``model.pt`` and
``scenario.yaml``), or without one a ``cnn`` trained centrally on the first ``--train-samples``
training images of ``--dataset`` (default Fashion-MNIST) for ``--epochs`` epochs (seed ``--seed``). The test images are split
as the extraction audit splits them (:func:`fedsec.extraction.audit.holdout_split`, the scenario's
seed and ``extraction.holdout``, or ``--seed`` and ``--holdout``): the thieves' holdout and the
scoring images.

Benign streams (:func:`fedsec.extraction.prada.benign_orders`, as the audit draws them): the scoring
images in test-set order, then ``--streams`` − 1 seeded shuffles of them, each of ``--length``
queries (default: the largest attack budget, at most the scoring images), labelled with the
victim's classes. Attack streams: the run's ``extraction.attacks`` (with ``--run`` and a scenario
that has them, replayed with the audit's seeds for its last round, so their streams are the run's),
else those of ``scenarios/extraction/knockoff.yaml`` (knockoff with probabilities, adaptive
retraining with labels in 4 rounds, jacobian with 150 seed images and 6 rounds; 5,000 queries each);
``--budget`` gives every attack another budget.

PRADA runs over each stream once, to its end, with the run's ``extraction.prada`` parameters (or the
defaults; ``--test-every`` overrides); the Shapiro-Wilk statistic W does not depend on δ, so the
queries until detection for every δ of ``--deltas`` are read off the same tests
(:func:`fedsec.extraction.prada.first_alarm`). A stream raises the alarm at δ exactly when its
smallest W is below δ.

Printed: per δ, the benign streams with an alarm (false-positive rate) with its one-sided 95%
Clopper-Pearson upper bound, the median query of the benign false alarms, and the queries until
detection of each attack (``never``: no alarm); then the smallest W per stream (benign: quantiles)
and the largest δ whose false-positive rate stays at or under 1% on these streams.

    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python scripts/prada_study.py --run runs/<extraction run>
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import beta
from torch import nn

from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.extraction import EXTRACTIONS, Oracle, PradaParams, build_extraction
from fedsec.extraction.audit import derived_seed, holdout_split
from fedsec.extraction.base import ExtractionParams, agreement, thief_pool
from fedsec.extraction.prada import Prada, benign_orders, first_alarm, stream_statistics
from fedsec.models import build_model
from fedsec.training import ClientConfig, evaluate, to_input, train_local

CPU = torch.device("cpu")

EXAMPLE_ATTACKS = (  # scenarios/extraction/knockoff.yaml
    {"name": "knockoff", "budget": 5000, "thief_data": "holdout"},
    {"name": "retraining", "budget": 5000, "output": "labels", "rounds": 4},
    {"name": "jacobian", "budget": 5000, "seed_samples": 150, "rounds": 6},
)


def upper_bound(alarms: int, streams: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate with ``alarms`` of ``streams``."""
    return 1.0 if alarms == streams else float(beta.ppf(confidence, alarms + 1, streams - alarms))


def min_w(detector: Prada) -> float:
    """The smallest W of the stream's tests (1.0 when it made none)."""
    return min(detector.statistics, default=1.0)


@dataclass(frozen=True)
class Setting:
    """The victim and what an extraction audit of it uses."""

    victim: nn.Module
    data: ImageDataset
    count: int  # test images scored
    holdout: int
    seed: int
    round_number: int  # the audited round whose seeds the attacks use
    architecture: str  # of the copies
    attacks: list[ExtractionParams]
    prada: PradaParams
    source: str


def example_attacks() -> list[ExtractionParams]:
    return [EXTRACTIONS.get(a["name"]).Params(**a) for a in EXAMPLE_ATTACKS]


def from_run(run: Path) -> Setting:
    """The run's final model, with its scenario's extraction section (or the example's attacks)."""
    from fedsec.commands.inputs import load_model
    from fedsec.results import MODEL_FILE, SCENARIO_FILE
    from fedsec.scenario import load_scenario

    scenario = load_scenario(run / SCENARIO_FILE)
    data = load_dataset(scenario.data.dataset, scenario.data.root)
    model = load_model(run / MODEL_FILE, data, CPU)
    count = scenario.data.test_samples or len(data.test_y)
    section = scenario.extraction
    architecture = (section.substitute if section else None) or scenario.model.name
    return Setting(model, data, count, section.holdout if section else 5000, scenario.seed, scenario.rounds,
                   architecture, list(section.attacks) if section else example_attacks(),
                   (section.prada if section else None) or PradaParams(), f"final model of {run}")


def trained(args: argparse.Namespace) -> Setting:
    """A cnn trained centrally on ``--dataset`` (its first ``--train-samples`` training images)."""
    data = load_dataset(args.dataset)
    torch.manual_seed(args.seed)
    model = build_model("cnn", data.image_shape, data.num_classes, data.mean, data.std)
    n = args.train_samples
    train_local(model, data.train_x[:n], data.train_y[:n], ClientConfig(local_epochs=args.epochs, batch_size=64),
                torch.Generator().manual_seed(args.seed), CPU)
    return Setting(model.eval(), data, len(data.test_y), args.holdout, args.seed, 0, "cnn", example_attacks(),
                   PradaParams(), f"cnn trained centrally on {args.dataset} ({n} images, {args.epochs} epochs, seed {args.seed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run directory whose final model is the victim")
    parser.add_argument("--streams", type=int, default=100, help="benign streams (the first in test-set order)")
    parser.add_argument("--length", type=int, help="queries per benign stream (default: the largest budget)")
    parser.add_argument("--deltas", default="0.9,0.92,0.94,0.95,0.96", help="comma-separated δ values")
    parser.add_argument("--test-every", type=int, help="queries between two tests (default: the run's or 1)")
    parser.add_argument("--budget", type=int, help="every attack's budget (default: its own)")
    parser.add_argument("--no-attacks", action="store_true", help="benign streams only")
    parser.add_argument("--dataset", default="fashion-mnist", help="without --run: the victim's dataset")
    parser.add_argument("--holdout", type=int, default=5000, help="without --run: test images held out")
    parser.add_argument("--seed", type=int, default=0, help="without --run: seed of the victim and the split")
    parser.add_argument("--train-samples", type=int, default=20_000, help="without --run: victim's training images")
    parser.add_argument("--epochs", type=int, default=2, help="without --run: victim's training epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    if args.streams < 1:
        parser.error("--streams must be at least 1")
    if args.budget is not None and args.budget < 1:
        parser.error("--budget must be at least 1")
    deltas = sorted(float(d) for d in args.deltas.split(","))
    if not all(0 < d < 1 for d in deltas):
        parser.error("--deltas: every δ must lie in (0, 1)")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    setting = from_run(args.run) if args.run is not None else trained(args)
    victim, data, seed, prada = setting.victim, setting.data, setting.seed, setting.prada
    if args.test_every is not None:
        prada = prada.model_copy(update={"test_every": args.test_every})
    attacks = [] if args.no_attacks else setting.attacks
    if args.budget is not None:
        attacks = [a.model_copy(update={"budget": args.budget}) for a in attacks]
    held, scoring = holdout_split(setting.count, setting.holdout, seed)
    score_x, score_y = to_input(data.test_x[scoring], CPU), data.test_y[scoring]
    with torch.no_grad():
        classes = torch.cat([victim(b).argmax(1) for b in score_x.split(1000)])
    ma = evaluate(victim, data.test_x[: setting.count], data.test_y[: setting.count], 1000, CPU).accuracy
    length = min(args.length or max((a.budget for a in attacks), default=len(scoring)), len(scoring))
    print(f"victim: {setting.source}; MA {ma:.4f} on {setting.count} test images, "
          f"{(classes == score_y).float().mean():.4f} on the {len(scoring)} scoring images; holdout "
          f"{setting.holdout}; PRADA min_distances {prada.min_distances}, outlier_sigma {prada.outlier_sigma:g}, "
          f"test_every {prada.test_every}")

    attack_rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, f"round-{setting.round_number}"))
        for index, spec in enumerate(attacks):
            generator = torch.Generator().manual_seed(derived_seed(seed, f"{setting.round_number}-{index}"))
            pool = to_input(thief_pool(spec.thief_data, data.test_x[held], generator), CPU)
            oracle = Oracle(victim, spec.budget, spec.output)
            substitute = build_model(setting.architecture, data.image_shape, data.num_classes, data.mean, data.std)
            copy = build_extraction(spec).steal(oracle, pool, substitute, generator)
            accuracy, fidelity = agreement(copy, victim, score_x, score_y)
            detector = stream_statistics(prada, *oracle.stream())
            label = spec.name if [a.name for a in attacks].count(spec.name) == 1 else f"{spec.name}-{index}"
            attack_rows.append((f"{label} ({spec.output})", oracle.queries, detector))
            print(f"  {label}: {oracle.queries} queries, copy accuracy {accuracy:.4f}, fidelity {fidelity:.4f}, "
                  f"smallest W {min_w(detector):.4f}", flush=True)

    generator = torch.Generator().manual_seed(derived_seed(seed, f"{setting.round_number}-benign"))
    benign = []
    for order in benign_orders(len(classes), args.streams, length, generator):
        benign.append(stream_statistics(prada, score_x[order].flatten(1), classes[order]))
        if len(benign) % 10 == 0 and len(benign) < args.streams:
            print(f"  {len(benign)} benign streams done ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"  {args.streams} benign streams of {length} queries: PRADA done ({time.perf_counter() - started:.0f} s)")

    print()
    header = " | ".join(f"{name}: queries until detection" for name, _, _ in attack_rows)
    print(f"| δ | benign streams with an alarm (FPR) | FPR 95% upper bound | median first benign alarm | {header} |")
    print("|---|---|---|---|" + "---|" * len(attack_rows))
    for delta in deltas:
        alarms = [first_alarm(d, delta) for d in benign]
        raised = [a for a in alarms if a is not None]
        median = f"{statistics.median(raised):.0f}" if raised else "–"
        detected = " | ".join(f"{first_alarm(d, delta) or 'never'}" for _, _, d in attack_rows)
        print(f"| {delta:g} | {len(raised)} of {len(benign)} ({len(raised) / len(benign):.1%}) | "
              f"{upper_bound(len(raised), len(benign)):.1%} | {median} | {detected} |")

    smallest = np.sort([min_w(d) for d in benign])
    quantiles = ", ".join(f"{q:.0%} {np.quantile(smallest, q):.4f}" for q in (0, 0.01, 0.05, 0.5, 1))
    print()
    print(f"smallest W per benign stream (quantiles): {quantiles}; test-set order: {min_w(benign[0]):.4f}")
    print("smallest W per attack stream: " + ", ".join(f"{name} {min_w(d):.4f}" for name, _, d in attack_rows))
    allowed = int(0.01 * len(benign))  # streams that may alarm within a 1% false-positive rate
    print(f"largest δ with at most {allowed} of {len(benign)} benign streams alarmed (FPR <= 1%): "
          f"δ <= {smallest[allowed]:.4f} (an alarm needs W < δ)")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
