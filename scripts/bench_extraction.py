"""Time each extraction attack on the package's CNN beside IBM ART's KnockoffNets and CopycatCNN.

One victim (the ``cnn`` trained ``--victim-epochs`` on the first 10,000 training images), one thief
pool (the first half of the test set) and the same budget, epochs and batch size for every attack;
the copies are scored on the other half. Prints, as medians of ``--repeats`` runs: seconds per
extraction, seconds per 1,000 queries answered by the victim, PRADA's seconds per 1,000 queries it
replays (up to its first alarm), the queries used against the budget, the fidelity, and the ratio to ART's
KnockoffNets (random policy, labels) for the same work.

    .venv/bin/python scripts/bench_extraction.py --dataset fashion-mnist --budget 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from torch import Tensor, nn

from fedsec.data.datasets import load_dataset
from fedsec.extraction import EXTRACTIONS, Oracle, PradaParams, build_extraction, queries_until_detection
from fedsec.extraction.base import agreement
from fedsec.models import build_model
from fedsec.training import ClientConfig, to_input, train_local


class TimedOracle(Oracle):
    """The oracle, with the seconds spent answering."""

    seconds = 0.0

    def __call__(self, x: Tensor) -> Tensor:
        started = time.perf_counter()
        try:
            return super().__call__(x)
        finally:
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--victim-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from art.attacks.extraction import CopycatCNN, KnockoffNets
    from art.estimators.classification import PyTorchClassifier

    d = load_dataset(args.dataset)
    cpu = torch.device("cpu")

    def fresh() -> nn.Module:
        torch.manual_seed(1)
        return build_model("cnn", d.image_shape, d.num_classes, d.mean, d.std)

    torch.manual_seed(0)
    victim = build_model("cnn", d.image_shape, d.num_classes, d.mean, d.std)
    train_local(victim, d.train_x[:10_000], d.train_y[:10_000], ClientConfig(local_epochs=args.victim_epochs),
                torch.Generator().manual_seed(0), cpu)
    victim.eval()
    half = len(d.test_y) // 2
    pool, score_x, score_y = to_input(d.test_x[:half], cpu), to_input(d.test_x[half:], cpu), d.test_y[half:]
    prada = PradaParams()
    rows = []

    def ours(name: str, **params: object) -> None:
        spec = EXTRACTIONS.get(name).Params(name=name, budget=args.budget, epochs=args.epochs, **params)
        runs = []
        for repeat in range(args.repeats):
            oracle = TimedOracle(victim, spec.budget, spec.output)
            started = time.perf_counter()
            stolen = build_extraction(spec).steal(oracle, pool, fresh(), torch.Generator().manual_seed(repeat))
            total = time.perf_counter() - started
            started = time.perf_counter()
            replayed = queries_until_detection(prada, *oracle.stream()) or oracle.queries  # it stops at the alarm
            runs.append((total, oracle.seconds, (time.perf_counter() - started) / replayed * 1000, oracle.queries,
                         agreement(stolen, victim, score_x, score_y)[1]))
        rows.append((f"fedsec {name} ({spec.output})", runs))

    def art_victim() -> PyTorchClassifier:
        return PyTorchClassifier(model=victim, loss=nn.CrossEntropyLoss(), input_shape=d.image_shape,
                                 nb_classes=d.num_classes, clip_values=(0.0, 1.0), device_type="cpu")

    def art(label: str, attack_class: type) -> None:
        runs = []
        for repeat in range(args.repeats):
            np.random.seed(repeat)
            classifier = art_victim()
            predict, answered = classifier.predict, {"seconds": 0.0, "queries": 0}

            def timed_predict(x: np.ndarray, **kwargs: object) -> np.ndarray:
                started = time.perf_counter()
                out = predict(x, **kwargs)
                answered["seconds"] += time.perf_counter() - started
                answered["queries"] += len(x)
                return out

            classifier.predict = timed_predict
            model = fresh()
            thief = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(),
                                      optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                                      input_shape=d.image_shape, nb_classes=d.num_classes, clip_values=(0.0, 1.0),
                                      device_type="cpu")
            attack = attack_class(classifier, batch_size_fit=64, batch_size_query=1000, nb_epochs=args.epochs,
                                  nb_stolen=args.budget, use_probability=False)
            started = time.perf_counter()
            stolen = attack.extract(pool.numpy(), thieved_classifier=thief)
            total = time.perf_counter() - started
            runs.append((total, answered["seconds"], float("nan"), answered["queries"],
                         agreement(stolen.model.eval(), victim, score_x, score_y)[1]))
        rows.append((label, runs))

    ours("knockoff", output="labels")
    ours("knockoff")
    ours("retraining", output="labels")
    ours("jacobian", seed_samples=max(1, args.budget // 32), rounds=6)
    art("ART KnockoffNets (random, labels)", KnockoffNets)
    art("ART CopycatCNN (labels)", CopycatCNN)

    reference = statistics.median(run[0] for run in rows[-2][1])
    print(f"{args.dataset}, cnn, budget {args.budget}, {args.epochs} epochs, {args.threads} thread(s), "
          f"medians of {args.repeats}")
    print("| attack | s / extraction | victim s / 1,000 queries | PRADA s / 1,000 queries | queries / budget "
          "| fidelity | ratio to ART KnockoffNets |")
    print("|---|---|---|---|---|---|---|")
    for label, runs in rows:
        total = statistics.median(r[0] for r in runs)
        queries = statistics.median(r[3] for r in runs)
        victim_k = statistics.median(r[1] / r[3] * 1000 for r in runs)
        prada_k = statistics.median(r[2] for r in runs)
        fidelity = statistics.median(r[4] for r in runs)
        print(f"| {label} | {total:.2f} | {victim_k:.4f} | {'–' if np.isnan(prada_k) else f'{prada_k:.3f}'} "
              f"| {queries:.0f} / {args.budget} | {fidelity:.3f} | {total / reference:.2f} |")


if __name__ == "__main__":
    main()
