"""ROSE's security levels on the keyed-labels scheme, and RoSe-Mix's keyed labels on mixup triggers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from scipy.stats import chisquare

from fedsec.models import build_model
from fedsec.training import ClientConfig, train_local
from fedsec.watermark.base import WATERMARKS, OwnerPool
from fedsec.watermark.keyed_labels import KeyedLabels, key_labels, keyed_labels, rose_labels
from fedsec.watermark.mixup import blend
from fedsec.watermark.owner import WatermarkOwner
from fedsec.watermark.rose_mix import RoseMix

KEY = b"k" * 32
MANY = 2**40
"""So many classes that two independent labels coincide with negligible probability."""


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def with_one_pixel_changed(x: torch.Tensor, index: int) -> torch.Tensor:
    changed = x.clone()
    changed[index, 0, 0, 0] ^= 1
    return changed


def test_level_2_one_changed_image_changes_every_label() -> None:
    x = images(20)
    before, after = rose_labels(KEY, x, MANY, 2), rose_labels(KEY, with_one_pixel_changed(x, 7), MANY, 2)
    assert (before != after).all()
    assert torch.equal(before, rose_labels(KEY, x.clone(), MANY, 2))


def test_level_1_one_changed_image_changes_its_label_only() -> None:
    x = images(20)
    before, after = rose_labels(KEY, x, MANY, 1), rose_labels(KEY, with_one_pixel_changed(x, 7), MANY, 1)
    assert (before != after).nonzero().flatten().tolist() == [7]
    assert torch.equal(before, keyed_labels(KEY, x, MANY))


def test_level_0_ignores_the_images_but_not_the_key() -> None:
    labels = rose_labels(KEY, images(20), MANY, 0)
    assert torch.equal(labels, rose_labels(KEY, images(20, seed=1), MANY, 0))
    assert torch.equal(labels, key_labels(KEY, 20, MANY))
    assert (labels != rose_labels(b"other key", images(20), MANY, 0)).all()


@pytest.mark.parametrize("level", [0, 1, 2])
def test_every_level_draws_uniform_labels(level: int) -> None:
    counts = torch.bincount(rose_labels(KEY, images(3000, seed=2), 10, level), minlength=10)
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_keyed_labels_scheme_labels_at_its_level_and_defaults_to_level_1() -> None:
    x, y = images(60), torch.zeros(60, dtype=torch.int64)
    assert KeyedLabels.Params().level == 1
    for level in (0, 1, 2):
        scheme = KeyedLabels(KeyedLabels.Params(triggers=30, level=level), 10)
        secrets = scheme.create(KEY, OwnerPool(x, y), torch.nn.Linear(1, 1))
        assert torch.equal(secrets["x"], x[:30])
        assert torch.equal(secrets["y"], rose_labels(KEY, x[:30], 10, level))
    with pytest.raises(ValidationError):
        KeyedLabels.Params(level=3)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_rose_mix_labels_are_keyed_hashes_of_the_blends_and_reproducible(level: int) -> None:
    assert WATERMARKS.get("rose-mix") is RoseMix
    x, y = images(80), torch.zeros(80, dtype=torch.int64)
    scheme = RoseMix(RoseMix.Params(triggers=40, blend=0.4, level=level), 10)

    def create(key: bytes) -> dict[str, torch.Tensor]:
        return scheme.create(key, OwnerPool(x, y), torch.nn.Linear(1, 1))

    secrets = create(KEY)
    assert torch.equal(secrets["x"], blend(x[:40], secrets["key_image"], 0.4))
    assert not torch.equal(secrets["x"], x[:40])
    assert torch.equal(secrets["y"], rose_labels(KEY, secrets["x"], 10, level))
    again, other = create(KEY), create(b"other key")
    assert all(torch.equal(secrets[name], again[name]) for name in secrets)
    assert not torch.equal(other["key_image"], secrets["key_image"])
    assert (other["y"] != secrets["y"]).float().mean() > 0.6


def test_rose_mix_at_level_2_embeds_and_verifies(scenario_with, digits, owner_dir: Path) -> None:
    torch.manual_seed(0)
    model = build_model("cnn", digits.image_shape, digits.num_classes, digits.mean, digits.std)
    train_local(model, digits.train_x, digits.train_y, ClientConfig(local_epochs=1, lr=0.05),
                torch.Generator().manual_seed(0), torch.device("cpu"))
    scenario = scenario_with({"name": "rose-mix", "triggers": 50, "level": 2}, false_alarm=1e-6)
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), owner_dir)
    assert not owner.verify(model).verified
    record = owner.after_aggregation(1, model)
    assert record["wm_embedded"] == 1 and record["wm_verified"] == 1
