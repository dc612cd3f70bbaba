"""Each scheme: embedding verifies, white-box BER reaches 0, no false positives on clean models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from scipy.stats import chisquare

from fedsec.models import build_model
from fedsec.watermark.base import WATERMARKS
from fedsec.watermark.keyed_labels import keyed_labels
from fedsec.watermark.mixup import blend
from fedsec.watermark.noise_patterns import matches_commitments
from fedsec.watermark.owner import WatermarkOwner

SCHEMES = [
    {"name": "keyed-labels", "triggers": 50},
    {"name": "noise-patterns", "triggers": 50},
    {"name": "mixup", "triggers": 100, "verification_triggers": 50},
    {"name": "uchida", "bits": 64},
    {"name": "detector", "bits": 64, "triggers": 16},
    {"name": "fedcrypt", "bits": 32},
]


def test_only_fedcrypt_marks_a_layer_on_ciphertexts_and_it_must_fit_one(digits) -> None:
    model = build_model("cnn", digits.image_shape, digits.num_classes, digits.mean, digits.std)
    fedcrypt = WATERMARKS.get("fedcrypt")(WATERMARKS.get("fedcrypt").Params(), 10)
    last = fedcrypt.ciphertext_layer(model)
    size = dict(model.named_parameters())[last].numel()
    assert fedcrypt.embeds_on_ciphertexts and fedcrypt.check(model, size) == [] and fedcrypt.check(model, None) == []
    assert fedcrypt.check(model, size - 1) == [
        f"layer: {last} has {size} values, more than one ciphertext holds ({size - 1}); choose a smaller layer "
        "or a larger encryption.poly_modulus_degree"]
    for name in ("uchida", "noise-patterns"):
        scheme = WATERMARKS.get(name)(WATERMARKS.get(name).Params(), 10)
        assert not scheme.embeds_on_ciphertexts and scheme.ciphertext_layer(model) is None
        assert scheme.check(model, 1) == []
        with pytest.raises(TypeError, match="does not embed on ciphertexts"):
            scheme.embed_encrypted(None, {}, None, None, 1e-6)


def test_keyed_labels_depend_on_key_and_image_only(scenario_with, ) -> None:
    images = torch.randint(0, 256, (200, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = keyed_labels(b"k" * 32, images, 10)
    assert torch.equal(labels, keyed_labels(b"k" * 32, images.clone(), 10))
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(keyed_labels(b"k" * 32, images[order], 10), labels[order])
    assert (keyed_labels(b"other key" * 4, images, 10) != labels).float().mean() > 0.7


def test_keyed_labels_are_uniform(scenario_with, ) -> None:
    images = torch.randint(0, 256, (5000, 1, 8, 8), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    counts = torch.bincount(keyed_labels(b"secret", images, 10), minlength=10)
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_blend_weights_key_image(scenario_with, ) -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    key = torch.full((1, 4, 4), 200, dtype=torch.uint8)
    assert torch.equal(blend(x, key, 0.25), torch.full_like(x, 50))


@pytest.mark.parametrize("scheme", SCHEMES, ids=[s["name"] for s in SCHEMES])
def test_embedding_verifies_and_clean_models_do_not(scenario_with, scheme: dict, digits, clean_models, owner_dir: Path) -> None:
    scenario = scenario_with(scheme, false_alarm=1e-6)
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), owner_dir)
    for clean in clean_models:
        assert owner.verify(clean).p_value > 1e-3
    model = copy.deepcopy(clean_models[0])
    record = owner.after_aggregation(1, model)
    assert record["wm_embedded"] == 1 and record["wm_verified"] == 1 and record["wm_p_value"] <= 1e-6
    if scheme["name"] in ("uchida", "fedcrypt"):
        assert owner.verify(model).matches == scheme["bits"]  # BER 0 / WDR 1 right after embedding


def test_commitments_bind_the_revealed_trigger_set(scenario_with, digits, owner_dir: Path) -> None:
    import json

    scenario = scenario_with({"name": "noise-patterns", "triggers": 20})
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), owner_dir)
    published = json.loads((owner_dir / "public.json").read_text())["commitments"]
    assert matches_commitments(owner.secrets, published)
    forged = {**owner.secrets, "y": (owner.secrets["y"] + 1) % 10}
    assert not matches_commitments(forged, published)
