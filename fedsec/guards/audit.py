"""The runtime-guards audit: each chain of the ``runtime_guards`` section fitted on the server's
clean data and measured by the evaluator on the test set, clean and triggered.

The guards see the server's clean sample (training images only) when they are fitted, and the
inputs they guard when they are measured; the test labels, the attack's targets and which test
inputs carry a trigger stay with the evaluator.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from fedsec.attacks import build_data_attack
from fedsec.audit import AUDITS, Audit, RoundView
from fedsec.guards.metrics import auc, far, frr, sasr, sda, seconds_per_1000
from fedsec.guards.base import CleanData, GuardChain, build_guard
from fedsec.guards.config import RuntimeGuardsConfig
from fedsec.training import predict

if TYPE_CHECKING:
    from fedsec.data.datasets import ImageDataset
    from fedsec.scenario import Scenario

RECORD_FILE = "guards.jsonl"
CLEAN_STREAM = 23
"""Seed stream of the server's clean sample (distinct from the root data's and the owner's)."""


def clean_indices(train_size: int, samples: int, seed: int) -> np.ndarray:
    """Training-set indices of the server's clean sample: a seeded draw without replacement."""
    return np.random.default_rng([seed, CLEAN_STREAM]).choice(train_size, size=samples, replace=False)


class RuntimeGuardsAudit(Audit):
    """Measures every chain of the section; one record per chain and measured round."""

    record_file = RECORD_FILE

    def __init__(self, config: RuntimeGuardsConfig, scenario: Scenario, dataset: ImageDataset,
                 device: torch.device) -> None:
        self.config = config
        self.device = device
        self.seed = scenario.seed
        index = torch.from_numpy(clean_indices(len(dataset.train_y), config.clean_samples, scenario.seed))
        self.clean = CleanData(dataset.train_x[index].to(device), dataset.train_y[index].to(device),
                               dataset.num_classes, dataset.mean, dataset.std)
        count = scenario.data.test_samples or len(dataset.test_y)
        self.x, self.y = dataset.test_x[:count].to(device), dataset.test_y[:count].to(device)
        self.triggered: dict[str, tuple[Tensor, Tensor]] = {}
        spec = scenario.attack.data if scenario.attack is not None else None
        if spec is not None:
            attack = build_data_attack(spec)
            targeted = attack.asr_mask(self.y)
            asr_x, target = self.x[targeted], attack.target_labels(self.y[targeted])
            self.triggered = {name: (trigger(asr_x), target) for name, trigger in attack.test_triggers().items()}
        self.chains = {name: GuardChain([build_guard(spec) for spec in specs]) for name, specs in config.chains.items()}

    def due(self, round_number: int, final: bool) -> bool:
        return self.config.due(round_number, final)

    def __call__(self, view: RoundView) -> list[dict[str, Any]]:
        model = view.model
        started = time.perf_counter()
        plain = {"ma": sda(self._classify(model, self.x), self.y, torch.zeros_like(self.y, dtype=torch.bool))}
        for metric, (x, target) in self.triggered.items():
            plain[metric] = sasr(self._classify(model, x), target, torch.zeros_like(target, dtype=torch.bool))
        plain_s = time.perf_counter() - started
        inputs = len(self.y) + sum(len(t) for _, t in self.triggered.values())
        return [
            {"round": view.round_number, "chain": name, "guards": [g.params.name for g in chain.guards], **plain,
             "plain_seconds_per_1000": seconds_per_1000(plain_s, inputs),
             **self._measure(model, chain, i, inputs)}
            for i, (name, chain) in enumerate(self.chains.items())
        ]

    def _classify(self, model: nn.Module, x: Tensor) -> Tensor:
        return predict(model, x, self.config.batch_size, self.device).argmax(1)

    def _measure(self, model: nn.Module, chain: GuardChain, index: int, inputs: int) -> dict[str, Any]:
        """Fit ``chain`` on the clean sample, then FRR/SDA on clean test inputs and FAR/SASR/AUC
        per test trigger (``far``, ``sasr``, ``auc`` for the main one; DBA's parts as ``far_part0``...)."""
        # One seed per chain for every round: the split of the clean sample (fitting / threshold)
        # stays the same, so a reference model trained once never sees a later round's threshold data.
        generator = torch.Generator().manual_seed(self.seed * 1_000 + index)
        started = time.perf_counter()
        chain.fit(model, self.clean, generator)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        clean = chain(model, self.x)
        triggered = {metric: (chain(model, x), target) for metric, (x, target) in self.triggered.items()}
        guard_s = time.perf_counter() - started
        record: dict[str, Any] = {
            "frr": frr(clean.rejected),
            "sda": sda(self._classify(model, clean.inputs), self.y, clean.rejected),
            "thresholds": [g.threshold if g.rejects else None for g in chain.guards],
        }
        for metric, (verdict, target) in triggered.items():
            suffix = metric.removeprefix("asr")
            record[f"far{suffix}"] = far(verdict.rejected)
            record[f"sasr{suffix}"] = sasr(self._classify(model, verdict.inputs), target, verdict.rejected)
            record[f"auc{suffix}"] = [auc(c, t) for c, t in zip(clean.scores, verdict.scores, strict=True)]
        record["seconds_per_1000"] = seconds_per_1000(guard_s, inputs)
        record["fit_s"] = fit_s
        return record

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The last measurement of each chain."""
        last = {r["chain"]: {k: v for k, v in r.items() if k != "chain"} for r in records}
        return {"runtime_guards": last} if last else {}


@AUDITS.register("runtime_guards")
def build_runtime_guards_audit(scenario: Scenario, dataset: ImageDataset,
                               device: torch.device) -> RuntimeGuardsAudit | None:
    """The audit of the scenario's ``runtime_guards`` section (None without one; the run's
    preflight has checked that the training set holds its clean sample)."""
    config = scenario.runtime_guards
    if config is None:
        return None
    return RuntimeGuardsAudit(config, scenario, dataset, device)
