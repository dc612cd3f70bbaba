"""The attacks steal a model far above chance, never exceed their budget, and answer as configured."""

from __future__ import annotations

import pytest
import torch

from fedsec.extraction import EXTRACTIONS, BudgetExhausted, Oracle, build_extraction
from fedsec.extraction.base import agreement, thief_pool
from fedsec.extraction.jacobian import jacobian_step

ATTACKS = {
    "knockoff": {"budget": 500, "output": "labels"},
    "retraining": {"budget": 500, "output": "labels", "rounds": 3},
    "jacobian": {"budget": 400, "seed_samples": 50, "rounds": 4},
}


def steal(victim, name: str, **params):
    spec = EXTRACTIONS.get(name).Params(name=name, **params)
    oracle = Oracle(victim.model, spec.budget, spec.output)
    copy = build_extraction(spec).steal(oracle, victim.pool, victim.fresh(), torch.Generator().manual_seed(2))
    return copy, oracle


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_labels_only_extraction_agrees_with_the_victim_far_above_chance(victim, name: str) -> None:
    copy, oracle = steal(victim, name, **ATTACKS[name])
    accuracy, fidelity = agreement(copy, victim.model, victim.test_x, victim.test_y)
    assert oracle.queries <= ATTACKS[name]["budget"]
    assert fidelity > 0.6 and accuracy > 0.6  # chance: 0.1


@pytest.mark.parametrize(("name", "params"), [
    ("knockoff", {"budget": 37}),
    ("retraining", {"budget": 37, "rounds": 5}),
    ("jacobian", {"budget": 37, "seed_samples": 10, "rounds": 6}),  # 10, 20, 40 would pass 37
    ("jacobian", {"budget": 5, "seed_samples": 10}),
])
def test_queries_never_exceed_the_budget(victim, name: str, params: dict) -> None:
    _, oracle = steal(victim, name, epochs=1, **params)
    x, classes = oracle.stream()
    assert oracle.queries == len(x) == len(classes) == min(params["budget"], len(victim.pool))


def test_the_oracle_refuses_a_batch_past_the_budget_and_answers_nothing(victim) -> None:
    oracle = Oracle(victim.model, 10, "labels")
    oracle(victim.pool[:6])
    with pytest.raises(BudgetExhausted):
        oracle(victim.pool[:5])
    assert oracle.queries == 6 and oracle.remaining == 4


def test_answers_are_one_hot_labels_or_the_softmax(victim) -> None:
    x = victim.pool[:20]
    logits = victim.model(x)
    labels = Oracle(victim.model, 20, "labels")(x)
    probabilities = Oracle(victim.model, 20, "probabilities")(x)
    assert torch.equal(labels.argmax(1), logits.argmax(1)) and torch.equal(labels.sum(1), torch.ones(20))
    torch.testing.assert_close(probabilities, logits.softmax(1))


def test_the_jacobian_step_moves_each_pixel_by_lambda_towards_the_class_within_the_image_range(victim) -> None:
    x = victim.pool[:8]
    classes = victim.model(x).argmax(1)
    moved = jacobian_step(victim.model, x, classes, 0.1)
    assert moved.min() >= 0 and moved.max() <= 1
    change = (moved - x).abs()
    assert torch.all((change <= 0.1 + 1e-6))
    inside = change[(x > 0.1) & (x < 0.9)]
    assert torch.all(torch.isclose(inside, torch.tensor(0.1)) | (inside == 0))  # sign(0) = 0 where max-pooling drops a pixel
    before = victim.model(x).gather(1, classes[:, None])
    after = victim.model(moved).gather(1, classes[:, None])
    assert (after > before).float().mean() >= 0.75  # a first-order step up the class's logit


def test_thief_sources_keep_the_holdout_shape_and_range() -> None:
    holdout = torch.randint(0, 256, (30, 3, 28, 28), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    assert thief_pool("holdout", holdout, generator) is holdout
    noise = thief_pool("noise", holdout, generator)
    assert noise.shape == holdout.shape and noise.dtype == torch.uint8 and noise.float().std() > 60
    digits = thief_pool("digits", holdout, generator)
    assert digits.shape == (1797, 3, 28, 28) and digits.dtype == torch.uint8
    assert torch.equal(digits[:, 0], digits[:, 2]) and digits.max() > 200
