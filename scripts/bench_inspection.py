"""Seconds per model of each inspector and repair on the ``cnn`` of fedsec/models.py for
Fashion-MNIST inputs (1 x 28 x 28, 10 classes), beside two references measured in the same run
on the same model and clean images: one plain forward+backward pass over the clean images, and
IBM ART's activation-clustering poison detector (``ActivationDefence``, 2 clusters, PCA to 10
dimensions) on them.

The model is freshly initialised and the clean images are uniform random uint8 pixels with
random labels: the timings measure the computation, not a detection (REStore, black-box, spends
its whole ``--restore-budget`` of queries on such a model: no class reaches its final level). Weight-space is timed
once fitted (its fit on ``--references`` perturbed copies is shown separately). Each figure is
the median of ``--repeats`` runs; ``ratio`` divides it by the forward+backward reference.

Usage: python scripts/bench_inspection.py [--clean 500] [--repeats 3] [--epochs 30] [--restore-budget 500000]
       [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from art.defences.detector.poison import ActivationDefence
from art.estimators.classification import PyTorchClassifier
from torch import nn

from fedsec.inspection import QueryFunction, build_inspector, build_repair
from fedsec.models import build_model
from fedsec.params import load_vector, model_vector
from fedsec.training import to_input

SHAPE, CLASSES = (1, 28, 28), 10


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    model.train()
    for xb, yb in zip(x.split(32), y.split(32), strict=True):
        nn.functional.cross_entropy(model(to_input(xb, device)), yb.to(device)).backward()
    model.zero_grad(set_to_none=True)


def activation_clustering(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    classifier = PyTorchClassifier(model=copy.deepcopy(model).cpu(), loss=nn.CrossEntropyLoss(),
                                   input_shape=SHAPE, nb_classes=CLASSES, clip_values=(0.0, 1.0))
    images = (x.float() / 255).cpu().numpy()
    labels = np.eye(CLASSES, dtype=np.float32)[y.cpu().numpy()]
    ActivationDefence(classifier, images, labels).detect_poison(nb_clusters=2, reduce="PCA", nb_dims=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", type=int, default=500, help="clean images the server holds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="Neural Cleanse epochs per class")
    parser.add_argument("--references", type=int, default=8, help="weight-space reference models")
    parser.add_argument("--restore-budget", type=int, default=500_000, help="REStore query budget")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("cnn", SHAPE, CLASSES, (0.2860,), (0.3530,)).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.clean, *SHAPE), generator=g, dtype=torch.uint8).to(device)
    y = torch.randint(0, CLASSES, (args.clean,), generator=g).to(device)

    forward_backward(model, x, y, device)  # warm-up: thread pools and allocator
    reference = median_seconds(lambda: forward_backward(model, x, y, device), args.repeats)
    art = median_seconds(lambda: activation_clustering(model, x, y), args.repeats)
    cleanse = build_inspector({"name": "neural-cleanse", "epochs": args.epochs})
    tabor = build_inspector({"name": "tabor", "epochs": args.epochs})
    restore = build_inspector({"name": "restore", "query_budget": args.restore_budget})
    deep_inspect = build_inspector({"name": "deep-inspect"})
    weights = build_inspector({"name": "weight-space", "references": args.references})
    base = model_vector(model)
    references = []
    for _ in range(args.references):
        copy_ = copy.deepcopy(model)
        load_vector(copy_, base + 0.01 * torch.randn(base.shape, generator=g).to(device))
        references.append(copy_)
    fit = median_seconds(lambda: weights.fit(references), args.repeats)
    repair = build_repair({"name": "fine-pruning"})
    rows = [
        ("forward+backward over the clean images (reference)", reference),
        ("ART activation clustering (reference)", art),
        (f"neural-cleanse, white-box, {args.epochs} epochs x {CLASSES} classes",
         median_seconds(lambda: cleanse.inspect(model, x, y, torch.Generator().manual_seed(0)), args.repeats)),
        (f"tabor, white-box, {args.epochs} epochs x {CLASSES} classes",
         median_seconds(lambda: tabor.inspect(model, x, y, torch.Generator().manual_seed(0)), args.repeats)),
        (f"restore, black-box, {args.restore_budget} queries",
         median_seconds(lambda: restore.inspect(QueryFunction.of_model(model, args.restore_budget), x, y,
                                                torch.Generator().manual_seed(0)), args.repeats)),
        ("deep-inspect, white-box, defaults (no clean data used)",
         median_seconds(lambda: deep_inspect.inspect(model, x, y, torch.Generator().manual_seed(0)), args.repeats)),
        (f"weight-space fit on {args.references} references", fit),
        ("weight-space inspection", median_seconds(lambda: weights.inspect(model, x, y, g), args.repeats)),
        ("fine-pruning repair (5 epochs)",
         median_seconds(lambda: repair.repair(model, x, y, torch.Generator().manual_seed(0)), args.repeats)),
    ]
    print(f"cnn on {SHAPE}, {args.clean} clean images, device {device}, median of {args.repeats} runs")
    print(f"{'method':<62} {'seconds':>10} {'ratio':>10}")
    for name, seconds in rows:
        print(f"{name:<62} {seconds:>10.4f} {seconds / reference:>10.1f}")


if __name__ == "__main__":
    main()
