"""STRIP's settings on a finished run's model, beside IBM ART's STRIP on the same model and inputs.

For a run directory with a data attack (BadNets, say), the server's clean sample, the clean test
inputs and the triggered ones are built as the ``runtime_guards`` audit builds them. Printed, per
setting (superimposition, number of overlays N, threshold rule): FRR, FAR, AUC, the mean entropy
of clean and triggered inputs, and how often the superimposed copies of triggered inputs still go
to the target (does the trigger survive the blend?). The last row is ART 1.20's
``art.defences.transformer.poisoning.STRIP`` (its own blend, entropy and threshold) at the same FRR.

Usage: python scripts/strip_study.py RUN_DIR [--test-samples 1000] [--frr 0.01]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedsec.commands.inputs import load_model
from fedsec.data.datasets import load_dataset
from fedsec.guards import RuntimeGuardsConfig, build_guard
from fedsec.guards.audit import RuntimeGuardsAudit
from fedsec.guards.base import images, probabilities
from fedsec.guards.metrics import auc, far, frr
from fedsec.guards.strip import superimpose
from fedsec.results import MODEL_FILE, SCENARIO_FILE
from fedsec.scenario import load_scenario

SETTINGS = [("add", 100, "normal"), ("add", 100, "quantile"), ("add", 20, "normal"), ("add", 20, "quantile"),
            ("average", 20, "normal"), ("average", 20, "quantile")]
"""(superimposition, N, threshold rule): fedsec's defaults first."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="finished run directory with a data attack")
    parser.add_argument("--test-samples", type=int, default=1000, help="first test images measured")
    parser.add_argument("--frr", type=float, default=0.01, help="false rejection rate of the thresholds")
    args = parser.parse_args()
    torch.manual_seed(0)
    scenario = load_scenario(args.run / SCENARIO_FILE)
    section = {"chains": {"strip": [{"name": "strip"}]}}
    scenario = scenario.model_copy(update={
        "runtime_guards": RuntimeGuardsConfig.model_validate(section),
        "data": scenario.data.model_copy(update={"test_samples": args.test_samples})})
    dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    device = torch.device("cpu")
    model = load_model(args.run / MODEL_FILE, dataset, device)
    audit = RuntimeGuardsAudit(scenario.runtime_guards, scenario, dataset, device)
    triggered, target = audit.triggered["asr"]
    print(f"{args.run}: MA {(probabilities(model, images(audit.x), 1024).argmax(1) == audit.y).float().mean():.3f}, "
          f"ASR {(probabilities(model, images(triggered), 1024).argmax(1) == target).float().mean():.3f}; "
          f"{len(audit.y)} clean and {len(target)} triggered test inputs, FRR {args.frr}")
    print("| superimpose | N | threshold | FRR | FAR | AUC | entropy clean | entropy triggered | "
          "blended triggered copies → target | blended clean copies → target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    pool = images(audit.clean.x)
    g = torch.Generator().manual_seed(1)
    survival = {}
    for mode in ("add", "average"):
        index = torch.randint(len(pool), (len(target), 20), generator=g)
        survival[mode] = {name: (probabilities(model, superimpose(images(x[:len(target)]), pool[index], mode)
                                               .flatten(0, 1), 4096).argmax(1) == target[0]).float().mean().item()
                          for name, x in (("triggered", triggered), ("clean", audit.x[audit.y != target[0]]))}
    for mode, n, rule in SETTINGS:
        to_target = survival[mode]
        guard = build_guard({"name": "strip", "frr": args.frr, "perturbations": n, "superimpose": mode,
                             "threshold": rule})
        guard.fit(model, audit.clean, torch.Generator().manual_seed(0))
        clean, bad = guard(model, audit.x), guard(model, triggered)
        print(f"| {mode} | {n} | {rule} | {frr(clean.rejected):.3f} | {far(bad.rejected):.3f} | "
              f"{auc(clean.scores, bad.scores):.3f} | {-clean.scores.mean():.3f} | {-bad.scores.mean():.3f} | "
              f"{to_target['triggered']:.3f} | {to_target['clean']:.3f} |", flush=True)

    from art.defences.transformer.poisoning import STRIP
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(nn.Sequential(model, nn.Softmax(1)), nn.CrossEntropyLoss(),
                                   tuple(dataset.image_shape), dataset.num_classes, clip_values=(0.0, 1.0))
    art = STRIP(classifier)(num_samples=20, false_acceptance_rate=args.frr)
    np.random.seed(0)
    art.mitigate(images(audit.clean.x[: len(audit.clean.x) // 2]).numpy())
    abstained = {name: ~art.predict(images(x).numpy()).any(1) for name, x in (("clean", audit.x), ("bad", triggered))}
    print(f"| ART STRIP (average, its entropy) | 20 | normal | {abstained['clean'].mean():.3f} | "
          f"{1 - abstained['bad'].mean():.3f} | | | | | |")


if __name__ == "__main__":
    main()
