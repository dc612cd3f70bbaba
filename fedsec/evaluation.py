"""The evaluator: god-view scoring of the global model; it never influences training."""

from __future__ import annotations

import torch
from torch import nn

from fedsec.data.datasets import ImageDataset
from fedsec.scenario import EvaluationConfig
from fedsec.training import evaluate


class Evaluator:
    """Scores a model on the clean test set (first ``test_samples`` examples, or all)."""

    def __init__(
        self, dataset: ImageDataset, cfg: EvaluationConfig, test_samples: int | None, device: torch.device
    ) -> None:
        count = test_samples or len(dataset.test_y)
        self.x = dataset.test_x[:count].to(device)
        self.y = dataset.test_y[:count].to(device)
        self.batch_size = cfg.batch_size
        self.device = device

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``ma`` (top-1 accuracy, 0..1) and ``loss`` (mean cross-entropy) on the test set."""
        result = evaluate(model, self.x, self.y, self.batch_size, self.device)
        return {"ma": result.accuracy, "loss": result.loss}
