"""The extraction audit: thieves steal the global model through its prediction API after the
rounds the scenario's ``extraction`` section names; PRADA watches their query streams; the owner
checks every stolen copy for its watermark (the ownership dispute).

Data. A seeded draw splits the test images the evaluator scores (``data.test_samples`` or all)
into the thieves' holdout (``holdout`` images, unlabelled for them) and the scoring images, on
which each copy's accuracy and fidelity are measured and the benign PRADA streams are drawn.
The training set is not used: the partitioners hand all of it to the clients.

Records (``extraction.jsonl``, docs/extraction.md): one per attack and round, plus one ``benign``
record per round when PRADA watches. The audit leaves the federation's random state as it was.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedsec.audit import AUDITS, Audit, RoundView
from fedsec.data.datasets import ImageDataset
from fedsec.extraction.base import Oracle, agreement, build_extraction, thief_pool
from fedsec.extraction.config import ExtractionConfig
from fedsec.extraction.prada import benign_orders, queries_until_detection
from fedsec.models import build_model
from fedsec.training import to_input
from fedsec.watermark.owner import OWNER_DIR, WatermarkOwner

if TYPE_CHECKING:
    from fedsec.scenario import Scenario


def derived_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one named use of the scenario seed."""
    digest = hashlib.sha256(f"extraction:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def holdout_split(count: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded split of the first ``count`` test images: the thieves' ``holdout`` indices and the
    scoring indices, these in test-set order (the first benign stream)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(derived_seed(seed, "holdout")))
    return order[:holdout], order[holdout:].sort().values


class ExtractionAudit(Audit):
    """Runs the section's attacks on the global model when due.

    Parameters
    ----------
    config : ExtractionConfig
        The scenario's ``extraction`` section.
    scenario : Scenario
        The run's scenario (seed, model, test samples, watermark).
    dataset : ImageDataset
        The task's data.
    device : torch.device
        Where the victim lives and the copies train.
    """

    record_file = "extraction.jsonl"

    def __init__(self, config: ExtractionConfig, scenario: Scenario, dataset: ImageDataset,
                 device: torch.device) -> None:
        count = scenario.data.test_samples or len(dataset.test_y)
        if config.holdout >= count:
            raise ValueError(f"extraction.holdout: {config.holdout} is not less than the {count} test images scored")
        self.config, self.scenario, self.dataset, self.device = config, scenario, dataset, device
        held, scoring = holdout_split(count, config.holdout, scenario.seed)
        self.holdout_x = dataset.test_x[held]
        self.score_x = to_input(dataset.test_x[scoring], device)
        self.score_y = dataset.test_y[scoring].to(device)
        self.architecture = config.substitute or scenario.model.name
        names = [spec.name for spec in config.attacks]
        self.labels = [name if names.count(name) == 1 else f"{name}-{i}" for i, name in enumerate(names)]
        self.owner: WatermarkOwner | None = None

    def due(self, round_number: int, final: bool) -> bool:
        return (final and self.config.at_end) or round_number in self.config.rounds

    def __call__(self, view: RoundView) -> list[dict[str, Any]]:
        return self.extract_all(view)[1]

    def extract_all(self, view: RoundView) -> tuple[list[nn.Module], list[dict[str, Any]]]:
        """Every attack on the round's global model: the stolen copies, and the records (one per
        copy, then PRADA's benign record when it watches)."""
        if self.scenario.watermark is not None and self.owner is None:
            self.owner = WatermarkOwner(self.scenario.watermark, self.scenario, self.dataset, self.device,
                                        view.run_dir / OWNER_DIR)
        with torch.random.fork_rng(devices=[]):  # copies are initialised from the CPU generator
            torch.manual_seed(derived_seed(self.scenario.seed, f"round-{view.round_number}"))
            victim_accuracy, _ = agreement(view.model, view.model, self.score_x, self.score_y)
            stolen = [self.steal(view, i) for i in range(len(self.config.attacks))]
        records = [{**record, "victim_accuracy": victim_accuracy} for _, record in stolen]
        if self.config.prada is not None:
            records.append(self.benign(view))
        return [copy for copy, _ in stolen], records

    def substitute(self) -> nn.Module:
        """A freshly initialised copy on the audit's device."""
        d = self.dataset
        return build_model(self.architecture, d.image_shape, d.num_classes, d.mean, d.std).to(self.device)

    def steal(self, view: RoundView, index: int) -> tuple[nn.Module, dict[str, Any]]:
        """Attack ``index`` on the round's global model: the stolen copy and its record (but the
        victim's accuracy)."""
        spec = self.config.attacks[index]
        generator = torch.Generator().manual_seed(derived_seed(self.scenario.seed, f"{view.round_number}-{index}"))
        pool = to_input(thief_pool(spec.thief_data, self.holdout_x, generator), self.device)
        oracle = Oracle(view.model, spec.budget, spec.output)
        started = time.perf_counter()
        copy = build_extraction(spec).steal(oracle, pool, self.substitute(), generator)
        seconds = time.perf_counter() - started
        accuracy, fidelity = agreement(copy, view.model, self.score_x, self.score_y)
        record: dict[str, Any] = {
            "round": view.round_number, "attack": self.labels[index], "method": spec.name, "output": spec.output,
            "thief_data": spec.thief_data, "budget": spec.budget, "queries": oracle.queries,
            "accuracy": accuracy, "fidelity": fidelity, "extract_s": seconds,
        }
        if self.config.prada is not None:
            record["prada_detected_at"] = queries_until_detection(self.config.prada, *oracle.stream())
        if self.owner is not None:
            record.update(self.owner.verify(copy).record())
            record.update({f"victim_{k}": v for k, v in self.owner.verify(view.model).record().items()})
        return copy, record

    @torch.no_grad()
    def benign(self, view: RoundView) -> dict[str, Any]:
        """PRADA on benign streams of the scoring images (test-set order, then seeded shuffles), as
        long as the largest budget allows: the record of its false alarms."""
        prada = self.config.prada
        length = min(max(spec.budget for spec in self.config.attacks), len(self.score_y))
        generator = torch.Generator().manual_seed(derived_seed(self.scenario.seed, f"{view.round_number}-benign"))
        classes = torch.cat([view.model.eval()(b).argmax(1) for b in self.score_x.split(1000)])
        detected = []
        for order in benign_orders(len(classes), prada.benign_streams, length, generator):
            order = order.to(self.device)
            detected.append(queries_until_detection(prada, self.score_x[order].flatten(1), classes[order]))
        return {"round": view.round_number, "attack": "benign", "method": "prada", "streams": prada.benign_streams,
                "stream_length": length, "prada_detected_at": detected,
                "prada_fpr": sum(d is not None for d in detected) / len(detected) if detected else None}

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """``extraction``: the last round's figures per attack (and PRADA's false-positive rate)."""
        if not records:
            return {}
        last = max(r["round"] for r in records)
        fields = ("queries", "accuracy", "fidelity", "prada_detected_at", "prada_fpr", "wm_verified",
                  "wm_match", "wm_ber", "wm_wdr", "wm_p_value", "victim_wm_verified")
        return {"extraction": {"round": last, **{
            r["attack"]: {k: r[k] for k in fields if k in r} for r in records if r["round"] == last}}}


@AUDITS.register("extraction")
def build_extraction_audit(scenario: Scenario, dataset: ImageDataset, device: torch.device) -> ExtractionAudit | None:
    """The extraction audit of the scenario's ``extraction`` section; None without one."""
    config = scenario.extraction
    return None if config is None else ExtractionAudit(config, scenario, dataset, device)
