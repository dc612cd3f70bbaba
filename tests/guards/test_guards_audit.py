"""The chain and the runtime_guards audit: order, records, and calibration on training images only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fedsec.preflight import data_problems
from fedsec.audit import AUDITS, RoundView
from fedsec.data.datasets import ImageDataset
from fedsec.guards import CleanData, Guard, GuardChain, build_guard
from fedsec.guards.audit import clean_indices
from fedsec.scenario import parse_scenario
from tests.guards.conftest import CLASSES, World, blobs


class Threshold(Guard):
    """Rejects images whose first pixel exceeds a fixed value and darkens the second pixel."""

    fits_on_clean = False

    def __init__(self, above: int) -> None:
        self.params = build_guard({"name": "strip"}).params
        self.threshold = float(above)

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return x[:, 0, 0, 0].float()

    def purify(self, model: nn.Module, x: Tensor) -> Tensor:
        out = x.clone()
        out[:, 0, 0, 1] = 0
        return out


def test_chain_passes_on_survivors_only() -> None:
    x = torch.full((4, 1, 2, 2), 9, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([10, 50, 90, 30], dtype=torch.uint8)
    verdict = GuardChain([Threshold(80), Threshold(40)])(nn.Identity(), x)
    assert verdict.rejected.tolist() == [False, True, True, False]
    assert verdict.inputs[~verdict.rejected, 0, 0, 1].tolist() == [0, 0]
    assert verdict.scores[0].tolist() == [10, 50, 90, 30]
    assert verdict.scores[1][2].isnan() and verdict.scores[1][[0, 1, 3]].tolist() == [10, 50, 30]


def scenario(**guards: object):  # noqa: ANN201
    return parse_scenario({
        "name": "guards", "rounds": 2, "data": {"dataset": "digits", "num_clients": 4, "test_samples": 400},
        "model": {"name": "mlp"},
        "attack": {"fraction": 0.25, "data": {"name": "badnets", "target_label": 0, "patch_size": 1,
                                              "position": "bottom-right", "pattern": "white"}},
        "runtime_guards": {"clean_samples": 600, "chains": {
            "strip": [{"name": "strip", "frr": 0.05}],
            "squeeze-pair": [{"name": "feature-squeezing", "frr": 0.05},
                             {"name": "model-pairing", "frr": 0.05, "translation": "least-squares"}],
            "bdmae": [{"name": "bdmae", "patch": 2, "inpainter_width": 8, "inpainter_steps": 20, "batch_size": 64,
                       "initial_inner": 2, "initial_outer": 2, "refine_steps": 2}]},
            **guards},
    })


@pytest.fixture()
def dataset(world: World) -> ImageDataset:
    """Training images carry 0 in their top-left pixel, test images 1: a guard fitted on a test
    image would show it."""
    train_x, train_y = blobs(2000, torch.Generator().manual_seed(5))
    train_x[:, 0, 0, 0] = 0
    test_x = world.test_x.clone()
    test_x[:, 0, 0, 0] = 1
    return ImageDataset("blobs", train_x, train_y, test_x, world.test_y, CLASSES, (0.0,), (1.0,))


def test_audit_records_and_calibration_on_training_images(
        world: World, dataset: ImageDataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fitted: list[CleanData] = []
    original = Guard.fit

    def spy(self: Guard, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:
        fitted.append(clean)
        original(self, model, clean, generator)

    monkeypatch.setattr(Guard, "fit", spy)
    s = scenario()
    audit = AUDITS.get("runtime_guards")(s, dataset, torch.device("cpu"))
    assert audit is not None and audit.due(2, True) and not audit.due(1, False)
    view = RoundView(2, True, world.model, torch.zeros(1), {}, frozenset(), tmp_path)
    records = audit(view)

    index = clean_indices(len(dataset.train_y), 600, s.seed)
    assert len(set(index.tolist())) == 600 and index.max() < len(dataset.train_y)
    assert len(fitted) == 4
    for clean in fitted:
        assert (clean.x[:, 0, 0, 0] == 0).all()
        assert clean.x.untyped_storage().data_ptr() != dataset.test_x.untyped_storage().data_ptr()
    assert torch.equal(fitted[0].x, dataset.train_x[torch.from_numpy(index)])

    assert [r["chain"] for r in records] == ["strip", "squeeze-pair", "bdmae"]
    strip, pair, purify = records
    assert pair["guards"] == ["feature-squeezing", "model-pairing"] and len(pair["auc"]) == 2
    assert purify["frr"] == 0 and purify["far"] == 1 and purify["thresholds"] == [None]
    for r in records[:2]:
        assert r["round"] == 2 and r["ma"] > 0.9 and r["asr"] > 0.9
        assert 0 <= r["frr"] <= 0.15 and r["sda"] <= r["ma"]
        assert r["far"] <= 0.1 and r["sasr"] <= r["far"] + 1e-6
        assert r["seconds_per_1000"] > 0 and r["plain_seconds_per_1000"] > 0
    assert strip["auc"][0] > 0.95
    summary = audit.summary(records)["runtime_guards"]
    assert set(summary) == {"strip", "squeeze-pair", "bdmae"} and summary["strip"]["far"] == strip["far"]


def test_no_section_no_audit(dataset: ImageDataset) -> None:
    s = scenario().model_copy(update={"runtime_guards": None})
    assert AUDITS.get("runtime_guards")(s, dataset, torch.device("cpu")) is None


def test_clean_sample_larger_than_the_training_set(dataset: ImageDataset) -> None:
    assert data_problems(scenario(clean_samples=5000), dataset) == [
        f"runtime_guards.clean_samples: 5000 is more than the 2000 training examples of {dataset.name}"]


def test_clean_indices_are_seeded() -> None:
    assert np.array_equal(clean_indices(100, 10, 3), clean_indices(100, 10, 3))
    assert not np.array_equal(clean_indices(100, 10, 3), clean_indices(100, 10, 4))
