"""Forgery (ambiguity) attacks on ROSE's security levels: the work spent and the claims that verify.

One model (the ``cnn`` trained ``--epochs`` on the first ``--train-samples`` Fashion-MNIST training
images; forgery needs no watermark in it) is claimed by usurpers who never saw the owner's key.
Each holds a key of its own (``--keys`` of them, one attempt each) and the first ``--pool`` test
images, and claims s = ``--triggers`` triggers of the keyed-labels scheme at levels 0, 1 and 2,
judged by the scheme's verification (p-value <= ``--false-alarm``). Both forgers of
:mod:`fedsec.watermark.forgery` run under the same budget per attempt. Printed per level and
forger: the mean work per attempt (inferences, hashes, backprop iterations), the mean matches of
the final claim against the matches required, and the claims that verified. Below the table:
ROSE's work formulas W0, W1, W2 for these s, C and t, and the tries a level-2 hash search expects
to need at this bound, 1 / P[Binomial(s, 1/C) >= required].

    nice -n 19 .venv/bin/python scripts/forgery_table.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedsec.data.datasets import load_dataset
from fedsec.models import build_model
from fedsec.training import ClientConfig, evaluate, train_local
from fedsec.watermark.forgery import Forgery, Work, adversarial, hash_search
from fedsec.watermark.keyed_labels import KeyedLabels
from fedsec.watermark.stats import binomial_p_value, required_matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=10_000, help="training images of the model")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the model")
    parser.add_argument("--pool", type=int, default=2_000, help="test images the usurpers hold")
    parser.add_argument("--triggers", type=int, default=100, help="triggers s in a claim")
    parser.add_argument("--keys", type=int, default=3, help="usurper keys, one attempt each per level and forger")
    parser.add_argument("--false-alarm", type=float, default=1e-6, help="verification bound on the p-value")
    parser.add_argument("--inferences", type=int, default=20_000, help="budget: model inferences per attempt")
    parser.add_argument("--hashes", type=int, default=2_000_000, help="budget: keyed-hash evaluations per attempt")
    parser.add_argument("--backprops", type=int, default=20_000, help="budget: backprop iterations per attempt")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps t per adversarial round")
    parser.add_argument("--epsilon", type=float, default=32.0, help="PGD L-inf radius, pixel levels (0..255)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    data = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = build_model("cnn", data.image_shape, data.num_classes, data.mean, data.std)
    cpu = torch.device("cpu")
    train_local(model, data.train_x[:args.train_samples], data.train_y[:args.train_samples],
                ClientConfig(local_epochs=args.epochs, batch_size=64, lr=0.05), torch.Generator().manual_seed(0), cpu)
    model.eval()
    accuracy = evaluate(model, data.test_x, data.test_y, 1000, cpu).accuracy
    pool = data.test_x[:args.pool]
    s, c = args.triggers, data.num_classes
    budget = Work(args.inferences, args.hashes, args.backprops)
    required = required_matches(s, 1.0 / c, args.false_alarm)
    print(f"cnn on {args.train_samples} Fashion-MNIST images, {args.epochs} epochs: test accuracy {accuracy:.4f}; "
          f"s = {s} triggers, C = {c}, verified when p <= {args.false_alarm:g}, i.e. >= {required} matches; "
          f"budget per attempt: {budget.inferences:,} inferences, {budget.hashes:,} hashes, "
          f"{budget.backprops:,} backprop iterations; PGD t = {args.steps}, epsilon = {args.epsilon:g}/255")
    print()
    print("| level | forger | inferences | hashes | backprop iterations | matches (final claim) / required | "
          "verified claims |")
    print("|---|---|---|---|---|---|---|")
    for level in (0, 1, 2):
        scheme = KeyedLabels(KeyedLabels.Params(triggers=s, level=level), c)
        forgers = {  # usurper i's key and seed
            "hash-search": lambda i: hash_search(model, scheme, f"usurper {i}".encode(), pool, budget,
                                                 args.false_alarm, torch.Generator().manual_seed(i)),
            "adversarial": lambda i: adversarial(model, scheme, f"usurper {i}".encode(), pool, budget,
                                                 args.false_alarm, steps=args.steps, epsilon=args.epsilon),
        }
        for name, forge in forgers.items():
            results: list[Forgery] = [forge(i) for i in range(args.keys)]

            def mean(kind: str, done: list[Forgery] = results) -> str:
                return f"{statistics.mean(getattr(r.work, kind) for r in done):,.0f}"

            matches = statistics.mean(r.verdict.matches for r in results)
            verified = sum(r.verdict.verified for r in results)
            print(f"| {level} | {name} | {mean('inferences')} | {mean('hashes')} | {mean('backprops')} | "
                  f"{matches:.1f} / {required} | {verified} of {len(results)} |", flush=True)

    t = args.steps
    w0 = 2 * s * t
    print()
    print(f"ROSE's work in inference units (omega_H = omega_F = 1), s = {s}, C = {c}, t = {t}: "
          f"W0 = 2st = {w0:,}; W1 = W0 + s(C-1)*2 = {w0 + s * (c - 1) * 2:,}; "
          f"W2 = W0 + s(C^s - 1)*2 = {w0 + s * (c ** s - 1) * 2:.3g} (every one of the s labels matched)")
    chance = binomial_p_value(required, s, 1.0 / c)
    print(f"At the bound, a level-2 try verifies with probability P[Binomial({s}, 1/{c}) >= {required}] = "
          f"{chance:.3g}: about {1 / chance:.3g} tries ({s / chance:.3g} hashes) expected per forgery; the budget "
          f"allows {min(budget.inferences - s, (budget.hashes - s) // s):,} tries")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
