"""The evaluator: god-view scoring of the global model; it never influences training."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from fedsec.attacks import build_data_attack
from fedsec.data.datasets import ImageDataset
from fedsec.training import evaluate, predict

if TYPE_CHECKING:
    from fedsec.scenario import Scenario


class Evaluator:
    """Main accuracy on the clean test set and, when the scenario has a data attack, the attack
    success rate (docs/metrics.md): over test samples the attack targets, the share classified as
    the attacker's label once the test-time trigger is applied."""

    def __init__(self, dataset: ImageDataset, scenario: Scenario, device: torch.device) -> None:
        count = scenario.data.test_samples or len(dataset.test_y)
        self.x = dataset.test_x[:count].to(device)
        self.y = dataset.test_y[:count].to(device)
        self.batch_size = scenario.evaluation.batch_size
        self.device = device
        spec = scenario.data_attack  # malicious clients' attack or the poisoned supply's
        self.attack = build_data_attack(spec) if spec is not None else None
        if self.attack is not None:
            targeted = self.attack.asr_mask(self.y)
            self.asr_x, self.asr_target = self.x[targeted], self.attack.target_labels(self.y[targeted])

    def attack_success(self, model: nn.Module, triggered: torch.Tensor) -> float:
        """Share of triggered inputs classified as the attacker's target (0..1)."""
        predicted = predict(model, triggered, self.batch_size, self.device).argmax(1)
        return (predicted == self.asr_target).float().mean().item()

    def clean_baseline(self, model: nn.Module) -> dict[str, float]:
        """What each test trigger achieves on ``model`` before any training (the round-0 global
        model, which holds no backdoor), to read an ASR against: ``<metric>_clean_baseline``
        (0..1) for every success metric of the attack; empty without a data attack."""
        if self.attack is None:
            return {}
        return {f"{metric}_clean_baseline": self.attack_success(model, trigger(self.asr_x))
                for metric, trigger in self.attack.test_triggers().items()}

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``ma`` (top-1 accuracy, 0..1), ``loss`` (mean cross-entropy), and ``asr`` (0..1) plus
        the attack's other test triggers (DBA: ``asr_part<i>`` for each local trigger alone)."""
        result = evaluate(model, self.x, self.y, self.batch_size, self.device)
        metrics = {"ma": result.accuracy, "loss": result.loss}
        if self.attack is not None:
            for metric, trigger in self.attack.test_triggers().items():
                metrics[metric] = self.attack_success(model, trigger(self.asr_x))
        return metrics
