"""The inspection section and its audit: schema errors name the key, the audit runs the
inspectors and the repair on the round's global model and scores them with the evaluator's
knowledge (true target, true trigger, test-set MA and ASR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fedsec.preflight import data_problems
from fedsec.attacks import build_data_attack
from fedsec.audit import AUDITS, RoundView
from fedsec.data.datasets import ImageDataset
from fedsec.inspection.audit import mask_iou, mask_iou_top, trigger_footprint
from fedsec.inspection.base import Trigger
from fedsec.params import model_vector
from fedsec.scenario import ScenarioError, parse_scenario
from tests.inspection.conftest import PATCH, Task

SECTION: dict[str, Any] = {
    "every": 2, "clean_samples": 160,
    "methods": [{"name": "neural-cleanse", "epochs": 40}, {"name": "weight-space", "references": 3}],
    "repair": {"name": "fine-pruning", "margin": 0.05, "epochs": 10, "lr": 0.05},
}


def scenario(**inspection: Any) -> Any:
    return parse_scenario({
        "name": "inspect", "rounds": 4, "data": {"num_clients": 4},
        "attack": {"fraction": 0.25, "data": {"name": "badnets", "target_label": 0, "patch_size": 2,
                                                "position": "bottom-right", "num_classes": 6}},
        "inspection": {**SECTION, **inspection},
    })


@pytest.mark.parametrize(("change", "message"), [
    ({"evry": 3}, "inspection.evry: unknown key"),
    ({"methods": [{"name": "neural-cleanse", "epoch": 3}]}, "inspection.methods.0.epoch: unknown key"),
    ({"methods": [{"name": "deepinspect"}]}, "inspection.methods.0"),
    ({"methods": [{"name": "tabor", "access": "black-box"}]}, "inspection.methods.0.access"),
    ({"repair": {"name": "fine-pruning", "margin": 2}}, "inspection.repair.margin"),
    ({"every": None, "at_end": False}, "give every, at_end: true or both"),
    ({"methods": [{"name": "neural-cleanse"}, {"name": "neural-cleanse"}]}, "each inspector at most once"),
])
def test_schema_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        scenario(**change)
    assert any(message in line for line in error.value.lines), error.value.lines


def test_the_section_is_frozen() -> None:
    with pytest.raises(ValueError):
        scenario().inspection.every = 3


def test_the_badnets_footprint_and_the_iou() -> None:
    attack = build_data_attack({"name": "badnets", "patch_size": 2, "position": "bottom-right"})
    footprint = trigger_footprint(attack, (1, 8, 8))
    truth = torch.zeros(8, 8, dtype=torch.bool)
    truth[PATCH] = True
    assert torch.equal(footprint, truth)
    mask = torch.zeros(8, 8)
    mask[6:8, 5:8] = 0.9  # 4 true pixels and 2 extra ones
    assert mask_iou(Trigger(mask, torch.ones(1, 8, 8)), footprint) == pytest.approx(4 / 6)
    faint = mask / 4  # the same shape below the 0.5 level: no pixel counts, but its 4 largest do
    faint[6, 5] = 0.1  # one extra pixel now ranks below the true ones
    faint[7, 5] = 0.0
    assert mask_iou(Trigger(faint, torch.ones(1, 8, 8)), footprint) == 0.0
    assert mask_iou_top(Trigger(faint, torch.ones(1, 8, 8)), footprint) == 1.0
    elsewhere = torch.zeros(8, 8)
    elsewhere[0:2, 0:2] = 0.3
    assert mask_iou_top(Trigger(elsewhere, torch.ones(1, 8, 8)), footprint) == 0.0
    assert trigger_footprint(build_data_attack({"name": "label-flip"}), (1, 8, 8)) is None


def _dataset(task: Task) -> ImageDataset:
    return ImageDataset("synthetic", task.x, task.y, task.test_x, task.test_y, 6, (0.0,), (1.0,))


def test_the_builder_needs_the_section_and_the_preflight_enough_training_images(task: Task) -> None:
    plain = parse_scenario({"name": "plain"})
    assert AUDITS.get("inspection")(plain, _dataset(task), torch.device("cpu")) is None
    assert data_problems(scenario(clean_samples=500), _dataset(task)) == [
        "inspection.clean_samples: 500 is more than the 160 training examples of synthetic"]


def test_the_audit_inspects_and_repairs_the_global_model(task: Task, tmp_path: Path) -> None:
    audit = AUDITS.get("inspection")(scenario(), _dataset(task), torch.device("cpu"))
    assert audit.due(2, False) and not audit.due(3, False) and audit.due(3, True)
    before = model_vector(task.backdoored)
    view = RoundView(2, False, task.backdoored, model_vector(task.clean), {}, frozenset(), tmp_path)
    records = audit(view)
    assert torch.equal(model_vector(task.backdoored), before)
    cleanse, weights, repair = records
    assert cleanse["method"] == "neural-cleanse" and cleanse["flagged"] and cleanse["targets"] == [0]
    assert cleanse["true_target"] == 0 and cleanse["target_found"] and cleanse["trigger_iou"] >= 0.75
    assert cleanse["trigger_iou_top"] >= 0.75
    # the true target is the most suspect class here: its own reconstruction is the reported one
    assert (cleanse["target_trigger_iou"], cleanse["target_trigger_iou_top"]) == (
        cleanse["trigger_iou"], cleanse["trigger_iou_top"])
    assert "target_trigger_iou" not in weights  # no reconstruction
    from fedsec.privacy.plots import image_grid

    png = (tmp_path / cleanse["trigger_png"]).read_bytes()
    width = int.from_bytes(png[16:20], "big")  # mask, pattern, masked pattern, then the true trigger's pixels
    assert png[:4] == b"\x89PNG" and width == int.from_bytes(image_grid([torch.zeros(4, 1, 8, 8)])[16:20], "big")
    assert weights["method"] == "weight-space" and weights["access"] == "white-box" and weights["queries"] == 0
    assert repair["kind"] == "repair" and repair["asr_before"] > 0.95 and repair["asr"] < repair["asr_before"] - 0.1
    assert repair["ma"] >= repair["ma_before"] - 0.05
    json.dumps(records)
    summary = audit.summary(records)["inspection"]
    assert summary["neural-cleanse"]["flagged"] == 1 and summary["neural-cleanse"]["target_found"] == 1
    assert summary["fine-pruning"]["asr"] == repair["asr"]
