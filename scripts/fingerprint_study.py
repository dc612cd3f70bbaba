"""Per-client fingerprints on Fashion-MNIST: MA cost, tracing and false accusations over leaked copies.

The global model is the ``cnn`` trained ``--epochs`` on the first ``--train-samples`` training
images, then watermarked by the owner with ``uchida`` (default parameters, embedded on the next
2,000 training images); or, with ``--run RUN_DIR``, the final model of a run whose scenario has a
``watermark.fingerprints`` section, with the run's own key, fingerprints and watermark. The
server makes one fingerprinted copy per client (``--clients``, or the run's
``data.num_clients``; :mod:`fedsec.watermark.fingerprints`); each copy leaks and is traced as sent, after global
magnitude pruning of ``--prune-rate`` of the weights (the ``prune`` removal attack), and after
the ``finetune`` removal attack (its defaults: 10% of the training set, 5 epochs, lr 0.01, a
different 10% per leak) on the first ``--finetuned-leaks`` leaks only, as fine-tuning costs
about 13 s of CPU per leak. The unfingerprinted global model is traced too.

Printed per condition: leaks traced, how many traced to the leaker, to another client, to
nobody; the leaker's bit error rate (mean, max); the most bits any innocent client matched
against the matches an accusation needs; test accuracy (MA, all 10,000 test images) mean and
min, and its drop against the unfingerprinted global model (mean, max; pruned leaks: the first
``--finetuned-leaks`` only); and on how many leaks the global watermark still verifies
(p <= 1e-6).

    nice -n 19 .venv/bin/python scripts/fingerprint_study.py
    nice -n 19 .venv/bin/python scripts/fingerprint_study.py --run runs/wm-fingerprints-...
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from fedsec.commands.inputs import load_model, load_owner
from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.models import build_model
from fedsec.training import ClientConfig, evaluate, train_local
from fedsec.watermark.base import OwnerPool
from fedsec.results import MODEL_FILE
from fedsec.watermark.base import Watermark
from fedsec.watermark.fingerprints import FingerprintParams, Fingerprints
from fedsec.watermark.removal.base import RemovalContext
from fedsec.watermark.removal.finetune import FineTune
from fedsec.watermark.removal.prune import prune_global
from fedsec.watermark.settings import EmbeddingConfig
from fedsec.watermark.uchida import Uchida

OWNER_SAMPLES = 2_000
"""Training images after the model's own that the owner embeds the global watermark with."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=20_000, help="training images of the global model")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the global model")
    parser.add_argument("--clients", type=int, default=100, help="clients, one fingerprinted copy (leak) each")
    parser.add_argument("--finetuned-leaks", type=int, default=20, help="leaks fine-tuned (the first ones)")
    parser.add_argument("--prune-rate", type=float, default=0.2, help="share of all weights pruned (0..1)")
    parser.add_argument("--bits", type=int, default=128, help="fingerprint length T")
    parser.add_argument("--margin", type=float, default=1.0, help="embedding margin, in units of |w̄|")
    parser.add_argument("--false-accusation", type=float, default=1e-6, help="bound per trace")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--run", type=Path, default=None,
                        help="a finished run with watermark.fingerprints: its final model, key and watermark")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cpu = torch.device("cpu")

    if args.run is None:
        data, model, fingerprints, watermark, embedding, is_marked, described = central_model(args, cpu)
    else:
        data, model, fingerprints, watermark, embedding, is_marked, described = run_model(args.run, cpu)

    def accuracy(m: nn.Module) -> float:
        return evaluate(m, data.test_x, data.test_y, 1000, cpu).accuracy

    base = accuracy(model)
    clients = fingerprints.num_clients
    bits = fingerprints.params.bits
    print(f"{described}: MA {base:.4f}; {clients} clients, T = {bits} bits on {fingerprints.layer}, margin "
          f"{fingerprints.params.margin:g}; accusation needs >= {fingerprints.required} of {bits} matches "
          f"({clients} x P[Binomial({bits}, 1/2) >= {fingerprints.required}] <= "
          f"{fingerprints.params.false_accusation:g})")

    made = time.perf_counter()
    copies = [fingerprints.copy_for(model, k).eval() for k in range(clients)]
    made = time.perf_counter() - made
    print(f"{clients} copies in {made:.2f} s ({1000 * made / clients:.1f} ms per client, what the server adds per "
          f"sampled client and round)")
    context = RemovalContext(data, lambda: copy.deepcopy(model), watermark, embedding)
    finetune = FineTune(FineTune.Params())

    def pruned(m: nn.Module, _: int) -> nn.Module:
        prune_global(m, args.prune_rate)
        return m

    def finetuned(m: nn.Module, k: int) -> nn.Module:
        return finetune(m, RemovalContext(context.dataset, context.build, watermark, embedding, seed=k))

    conditions: list[tuple[str, int, int, Callable[[nn.Module, int], nn.Module]]] = [
        ("as sent", clients, clients, lambda m, _: m),
        (f"pruned {args.prune_rate:.0%}", clients, args.finetuned_leaks, pruned),
        ("fine-tuned (10%, 5 epochs, lr 0.01)", args.finetuned_leaks, args.finetuned_leaks, finetuned),
    ]
    print()
    print("| leak | leaks | traced to the leaker | to another client | to nobody | leaker's BER mean (max) | "
          "most matches of an innocent / needed | MA mean (min) | MA drop mean (max), points | "
          "global watermark verified |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, leaks, measured, attack in conditions:
        right = wrong = nobody = verified = 0
        bers, innocent, accuracies = [], 0, []
        for k in range(leaks):
            leak = attack(copy.deepcopy(copies[k]), k).eval()
            trace = fingerprints.trace(leak)
            right += trace.client == k
            wrong += trace.client not in (k, None)
            nobody += trace.client is None
            bers.append(trace.ber(k))
            innocent = max(innocent, int(torch.cat([trace.matches[:k], trace.matches[k + 1:]]).max()))
            verified += is_marked(leak)
            if k < measured:
                accuracies.append(accuracy(leak))
        drops = [100 * (base - a) for a in accuracies]
        print(f"| {name} | {leaks} | {right} | {wrong} | {nobody} | {statistics.mean(bers):.3f} ({max(bers):.3f}) | "
              f"{innocent} / {fingerprints.required} | {statistics.mean(accuracies):.4f} ({min(accuracies):.4f}), "
              f"{len(accuracies)} leaks | {statistics.mean(drops):+.2f} ({max(drops):+.2f}) | {verified} of {leaks} |",
              flush=True)
    trace = fingerprints.trace(model)
    print(f"| unfingerprinted global model | 1 | – | {int(trace.client is not None)} | {int(trace.client is None)} | "
          f"– | {int(trace.matches.max())} / {fingerprints.required} | {base:.4f} | – | "
          f"{int(is_marked(model))} of 1 |")
    print(f"({time.perf_counter() - started:.0f} s)")


Study = tuple[ImageDataset, nn.Module, Fingerprints, Watermark, EmbeddingConfig, Callable[[nn.Module], bool], str]
"""The data, the global model, the fingerprints, the owner's watermark scheme and embedding settings,
whether a model carries the owner's watermark, and a description of the global model."""


def central_model(args: argparse.Namespace, cpu: torch.device) -> Study:
    """A centrally trained cnn watermarked with ``uchida``, and fingerprints for ``--clients``."""
    data = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = build_model("cnn", data.image_shape, data.num_classes, data.mean, data.std)
    n = args.train_samples
    train_local(model, data.train_x[:n], data.train_y[:n], ClientConfig(local_epochs=args.epochs, batch_size=64),
                torch.Generator().manual_seed(0), cpu)
    owner_x, owner_y = data.train_x[n:n + OWNER_SAMPLES], data.train_y[n:n + OWNER_SAMPLES]
    watermark = Uchida(Uchida.Params(), data.num_classes)
    owner_secrets = watermark.create(b"owner key", OwnerPool(owner_x, owner_y), model)
    embedding = EmbeddingConfig()
    steps = watermark.embed(model, owner_secrets, owner_x, owner_y, embedding, torch.Generator().manual_seed(1))
    model.eval()
    fingerprints = Fingerprints(
        FingerprintParams(bits=args.bits, margin=args.margin, false_accusation=args.false_accusation),
        b"owner key", args.clients, model, avoid=watermark.marked_layer(model))
    verdict = watermark.verify(model, owner_secrets)
    return (data, model, fingerprints, watermark, embedding, lambda m: watermark.verify(m, owner_secrets).verified,
            f"cnn, {n} Fashion-MNIST images, {args.epochs} epochs, uchida watermark ({steps} steps, BER "
            f"{verdict.statistic:.3f}, verified {verdict.verified})")


def run_model(run: Path, cpu: torch.device) -> Study:
    """A run's final model with the run's owner: its fingerprints, watermark and embedding settings."""
    owner, scenario, data = load_owner(run, cpu)
    if owner.fingerprints is None:
        raise SystemExit(f"{run}: the scenario has no watermark.fingerprints section")
    model = load_model(run / MODEL_FILE, data, cpu)
    verdict = owner.verify(model)
    return (data, model, owner.fingerprints, owner.scheme, owner.config.embedding,
            lambda m: owner.verify(m).verified,
            f"{run.name} ({scenario.rounds} rounds, {scenario.data.num_clients} clients), {owner.scheme.params.name} "
            f"watermark ({verdict.statistic_name} {verdict.statistic:.3f}, verified {verdict.verified})")


if __name__ == "__main__":
    main()
