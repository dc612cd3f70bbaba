"""The inspection audit: the server's inspectors on the global model after the rounds the
scenario names, and the optional repair of a copy of it.

Inspectors get the model (or its query function) and the server's clean images, a seeded
sample of the training set. The evaluator adds what they never see: the attack's true target,
the true trigger's footprint (for the IoU of the reconstructed mask) and, for a repair, the main
accuracy and attack success rate of the repaired copy on the test set.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from fedsec.attacks import DataAttack
from fedsec.audit import AUDITS, Audit, RoundView
from fedsec.evaluation import Evaluator
from fedsec.inspection.base import InspectionReport, Inspector, QueryFunction, Trigger, build_inspector, build_repair
from fedsec.inspection.config import InspectionConfig
from fedsec.params import load_vector, model_vector
from fedsec.results import write_atomic
from fedsec.training import train_local

if TYPE_CHECKING:
    from fedsec.data.datasets import ImageDataset
    from fedsec.scenario import Scenario

RECORD_FILE = "inspection.jsonl"
IMAGE_DIR = "inspection"
MASK_LEVEL = 0.5
"""A reconstructed mask's pixel counts in the trigger IoU when its value is at least this (0..1)."""


def trigger_footprint(attack: DataAttack, image_shape: tuple[int, int, int]) -> Tensor | None:
    """Pixels (H, W) bool the attack's test trigger changes on a black or a white image; None
    when it changes none or all of them (no localised trigger to compare a mask with)."""
    changed = torch.zeros(image_shape[1:], dtype=torch.bool)
    for value in (0, 255):
        image = torch.full((1, *image_shape), value, dtype=torch.uint8)
        changed |= (attack.apply_test_trigger(image) != image)[0].any(0)
    return changed if 0 < int(changed.sum()) < changed.numel() else None


def _iou(found: Tensor, footprint: Tensor) -> float:
    """Intersection over union of two boolean pixel sets of the same shape."""
    return int((found & footprint).sum()) / int((found | footprint).sum())


def mask_iou(trigger: Trigger, footprint: Tensor) -> float:
    """Intersection over union of the mask's pixels at least :data:`MASK_LEVEL` and ``footprint``."""
    return _iou(trigger.mask.detach().cpu() >= MASK_LEVEL, footprint)


def mask_iou_top(trigger: Trigger, footprint: Tensor) -> float:
    """Intersection over union of the mask's ``k`` largest pixels and ``footprint``, ``k`` the
    footprint's size: where the mask puts its weight, whatever its scale (evaluator knowledge:
    ``k`` comes from the true trigger). Ties at the k-th value are broken by pixel order."""
    mask = trigger.mask.detach().cpu().flatten()
    found = torch.zeros_like(mask, dtype=torch.bool)
    found[mask.topk(int(footprint.sum())).indices] = True
    return _iou(found.view(footprint.shape), footprint)


def clean_sample(dataset: ImageDataset, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """The inspectors' clean images and labels: ``count`` seeded draws from the training set
    (never the test set), the server's clean data."""
    chosen = np.random.default_rng([seed, 13]).choice(len(dataset.train_y), size=count, replace=False)
    index = torch.from_numpy(chosen)
    return dataset.train_x[index], dataset.train_y[index]


class InspectionAudit(Audit):
    """Runs the ``inspection`` section's inspectors and repair; one record per method and round."""

    record_file = RECORD_FILE

    def __init__(self, config: InspectionConfig, scenario: Scenario, dataset: ImageDataset, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.seed = scenario.seed
        self.training = scenario.client
        self.clients_per_round = scenario.clients_per_round
        self.batch_size = scenario.evaluation.batch_size
        x, y = clean_sample(dataset, config.clean_samples, scenario.seed)
        self.x, self.y = x.to(device), y.to(device)
        self.inspectors = [build_inspector(spec.model_dump()) for spec in config.methods]
        self.repair = None if config.repair is None else build_repair(config.repair.model_dump())
        self.evaluator = Evaluator(dataset, scenario, device)
        attack = self.evaluator.attack
        self.true_target = (attack.params.target_label
                            if attack is not None and attack.params.target_mode == "all-to-one" else None)
        self.footprint = None if attack is None else trigger_footprint(attack, dataset.image_shape)

    def due(self, round_number: int, final: bool) -> bool:
        every = self.config.every
        return (final and self.config.at_end) or (every is not None and round_number % every == 0)

    def __call__(self, view: RoundView) -> list[dict[str, Any]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + view.round_number)
        wanted = max(inspector.references() for inspector in self.inspectors)
        started = time.perf_counter()
        references = self.references(view, wanted, generator) if wanted else []
        reference_seconds = time.perf_counter() - started
        records = [self.inspect(view, inspector, references, generator) for inspector in self.inspectors]
        for record, inspector in zip(records, self.inspectors, strict=True):
            if inspector.references():
                record["reference_seconds"] = reference_seconds
        if self.repair is not None:
            records.append(self.repaired(view, generator))
        return records

    def references(self, view: RoundView, count: int, generator: torch.Generator) -> list[nn.Module]:
        """``count`` clean global models: each the mean of ``clients_per_round`` models trained
        from the round's starting global model as a client would (the scenario's ``client``
        settings), each of them on its own bootstrap draw of the clean images."""
        start = view.previous_vector.to(self.device)
        models = []
        for _ in range(count):
            model = copy.deepcopy(view.model)
            local = []
            for _ in range(self.clients_per_round):
                load_vector(model, start)
                draw = torch.randint(len(self.y), (len(self.y),), generator=generator).to(self.device)
                train_local(model, self.x[draw], self.y[draw], self.training, generator, self.device)
                local.append(model_vector(model))
            load_vector(model, torch.stack(local).mean(0))
            models.append(model.eval())
        return models

    def inspect(self, view: RoundView, inspector: Inspector, references: list[nn.Module],
                generator: torch.Generator) -> dict[str, Any]:
        """One inspector's record for the round's global model."""
        if inspector.references():
            inspector.fit(references[: inspector.references()])
        model = copy.deepcopy(view.model)
        budget = inspector.query_budget()
        subject = model if budget is None else QueryFunction.of_model(model, budget)
        report = inspector.inspect(subject, self.x, self.y, generator)
        record: dict[str, Any] = {
            "round": view.round_number, "kind": "inspection", "method": inspector.name,
            "access": "white-box" if budget is None else "black-box",
            "flagged": report.backdoored, "score": report.score, "threshold": report.threshold,
            "targets": list(report.targets), "class_scores": list(report.class_scores),
            "true_target": self.true_target,
            "target_found": None if self.true_target is None else self.true_target in report.targets,
            "queries": report.queries, "seconds": report.seconds,
        }
        if report.trigger is not None:
            record["trigger_iou"] = None if self.footprint is None else mask_iou(report.trigger, self.footprint)
            record["trigger_iou_top"] = None if self.footprint is None else mask_iou_top(report.trigger, self.footprint)
            record["trigger_png"] = str(self.write_trigger(view, inspector.name, report))
        if report.class_triggers and self.true_target is not None and self.footprint is not None:
            own = report.class_triggers[self.true_target]
            record["target_trigger_iou"] = mask_iou(own, self.footprint)
            record["target_trigger_iou_top"] = mask_iou_top(own, self.footprint)
        return record

    def write_trigger(self, view: RoundView, method: str, report: InspectionReport) -> Path:
        """PNG of the reconstructed mask, pattern and masked pattern, then (when the evaluator knows
        it) the pixels the true trigger changes; its path in the run directory."""
        from fedsec.privacy.plots import image_grid  # the privacy package's import costs every command's start-up

        assert report.trigger is not None
        mask, pattern = report.trigger.mask.detach().cpu(), report.trigger.pattern.detach().cpu()
        images = [mask.expand_as(pattern), pattern, mask * pattern]
        if self.footprint is not None:
            images.append(self.footprint.float().expand_as(pattern))
        png = Path(IMAGE_DIR) / f"round-{view.round_number:04d}-{method}.png"
        (view.run_dir / IMAGE_DIR).mkdir(exist_ok=True)
        write_atomic(view.run_dir / png, image_grid([torch.stack(images)]))
        return png

    def repaired(self, view: RoundView, generator: torch.Generator) -> dict[str, Any]:
        """The repair's record: what it pruned, the server's validation accuracy, and the
        evaluator's test-set figures (MA, loss, ASR) of the model before and after."""
        assert self.repair is not None
        started = time.perf_counter()
        result = self.repair.repair(view.model, self.x, self.y, generator)
        seconds = time.perf_counter() - started
        before, after = self.evaluator(view.model), self.evaluator(result.model)
        return {
            "round": view.round_number, "kind": "repair", "method": self.repair.name,
            "pruned": list(result.pruned), "accuracy_before": result.accuracy_before,
            "accuracy_pruned": result.accuracy_pruned, "accuracy_after": result.accuracy_after,
            **{f"{metric}_before": value for metric, value in before.items()}, **after, "seconds": seconds,
        }

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Per inspector: inspections, how many flagged, how many named the true target, and the
        last record's verdict; per repair: the last record's figures."""
        by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            by_method[r["method"]].append(r)
        out: dict[str, Any] = {}
        for method, rs in by_method.items():
            last = rs[-1]
            if last["kind"] == "repair":
                out[method] = {k: v for k, v in last.items() if k not in ("kind", "method")}
                continue
            found = [r["target_found"] for r in rs if r["target_found"] is not None]
            out[method] = {
                "inspections": len(rs), "flagged": sum(r["flagged"] for r in rs),
                "target_found": sum(found) if found else None,
                "last": {k: last[k] for k in ("round", "flagged", "score", "threshold", "targets")},
            }
        return {"inspection": out} if out else {}


@AUDITS.register("inspection")
def build_inspection_audit(scenario: Scenario, dataset: ImageDataset, device: torch.device) -> InspectionAudit | None:
    """The inspection audit of the scenario's ``inspection`` section (None without one; the run's
    preflight has checked that the training set holds its clean sample)."""
    config = scenario.inspection
    if config is None:
        return None
    return InspectionAudit(config, scenario, dataset, device)
