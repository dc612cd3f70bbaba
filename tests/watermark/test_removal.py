"""Removal attacks change the model as they claim."""

from __future__ import annotations

import copy

import pytest
import torch

from fedsec.models import build_model
from fedsec.watermark.keyed_labels import KeyedLabels
from fedsec.watermark.removal import RemovalContext, build_removal
from fedsec.watermark.removal.base import weights
from fedsec.watermark.settings import EmbeddingConfig
from fedsec.watermark.trigger_set import predicted_labels


@pytest.fixture
def context(digits) -> RemovalContext:
    scheme = KeyedLabels(KeyedLabels.Params(triggers=20), digits.num_classes)
    return RemovalContext(
        digits, lambda: build_model("cnn", digits.image_shape, 10, digits.mean, digits.std), scheme,
        EmbeddingConfig(max_steps=30, lr=0.05), seed=3)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_global_pruning_zeroes_exactly_the_rate(rate: float, clean_models, context) -> None:
    model = copy.deepcopy(clean_models[0])
    biases = [p.clone() for p in model.parameters() if p.dim() == 1]
    pruned = build_removal({"name": "prune", "rate": rate})(model, context)
    total = sum(w.numel() for w in weights(pruned))
    zeros = sum(int((w == 0).sum()) for w in weights(pruned))
    assert zeros == round(rate * total)
    assert all(torch.equal(a, b) for a, b in zip(biases, [p for p in pruned.parameters() if p.dim() == 1]))
    kept = torch.cat([w.abs().flatten() for w in weights(pruned)])
    assert kept[kept > 0].min() >= 0  # pruned the smallest: every kept weight beats every zeroed one
    original = torch.cat([w.abs().flatten() for w in weights(clean_models[0])])
    threshold = original.sort().values[round(rate * total) - 1]
    assert kept[kept > 0].min() >= threshold


def test_int8_quantization_quantizes_weights(clean_models, context) -> None:
    original = copy.deepcopy(clean_models[0])
    model = build_removal({"name": "quantize", "precision": "int8"})(copy.deepcopy(original), context)
    for before, after in zip(weights(original), weights(model)):
        flat_before, flat_after = before.flatten(1), after.flatten(1)
        scale = flat_before.abs().amax(1, keepdim=True) / 127
        assert all(len(torch.unique(row)) <= 255 for row in flat_after)
        assert torch.allclose(flat_after / scale, (flat_after / scale).round(), atol=1e-3)
        assert (flat_after - flat_before).abs().le(scale / 2 + 1e-7).all()
        assert not torch.equal(before, after)


def test_fp16_round_trips_every_value(clean_models, context) -> None:
    model = build_removal({"name": "quantize", "precision": "fp16"})(copy.deepcopy(clean_models[0]), context)
    for p in model.parameters():
        assert torch.equal(p, p.half().float())


def test_finetune_moves_weights_and_keeps_the_task(digits, clean_models, context) -> None:
    model = build_removal({"name": "finetune", "epochs": 1, "fraction": 0.3})(copy.deepcopy(clean_models[0]), context)
    assert not torch.equal(weights(model)[0], weights(clean_models[0])[0])
    assert (predicted_labels(model, digits.test_x) == digits.test_y).float().mean() > 0.8


def test_distillation_copies_the_behaviour_into_a_new_model(digits, clean_models, context) -> None:
    teacher = clean_models[0]
    student = build_removal({"name": "distill", "epochs": 5, "fraction": 0.8})(teacher, context)
    assert student is not teacher
    agreement = (predicted_labels(student, digits.test_x) == predicted_labels(teacher, digits.test_x)).float().mean()
    assert agreement > 0.6  # chance agreement is about 0.1


def test_overwrite_embeds_the_attackers_own_watermark(clean_models, context) -> None:
    model = copy.deepcopy(clean_models[0])
    attacked = build_removal({"name": "overwrite", "steps": 30, "fraction": 0.5})(model, context)
    assert not torch.equal(weights(attacked)[0], weights(clean_models[0])[0])
