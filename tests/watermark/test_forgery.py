"""Forgery (ambiguity) attacks on ROSE's levels: work counted against a budget, known answers."""

from __future__ import annotations

import torch
from torch import nn

from fedsec.watermark.forgery import Work, adversarial, flip_bit, hash_search, relabel_cost
from fedsec.watermark.stats import required_matches
from fedsec.watermark.keyed_labels import KeyedLabels, rose_labels
from fedsec.watermark.stats import Verdict

USURPER = b"usurper's own key"


def tiny_model(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes)).eval()


def usurper_images(n: int = 200) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 4, 4), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


def scheme(triggers: int, level: int, num_classes: int = 10) -> KeyedLabels:
    return KeyedLabels(KeyedLabels.Params(triggers=triggers, level=level), num_classes)


def test_required_matches_is_where_the_verdict_turns() -> None:
    for total, chance, bound in ((20, 0.1, 1e-6), (100, 0.1, 1e-6), (1, 0.5, 0.5), (5, 0.5, 1e-3)):
        k = required_matches(total, chance, bound)
        if k <= total:
            assert Verdict.binomial("match", k, total, chance, bound).verified
        if k > 0:
            assert not Verdict.binomial("match", k - 1, total, chance, bound).verified
    assert required_matches(5, 0.5, 1e-3) == 6  # five coin flips can never reach p <= 0.001


def test_flip_bit_changes_one_bit_of_each_image() -> None:
    x = usurper_images(50)
    flipped = flip_bit(x, torch.Generator().manual_seed(0))
    differing = (x ^ flipped).flatten(1)
    assert ((differing != 0).sum(1) == 1).all() and (differing.sum(1) == 1).all()


def test_known_answer_one_trigger_two_classes_is_forged_at_once() -> None:
    """One trigger, two classes, bound 0.5: each try verifies with probability 1/2, so the search
    must win within a few tries at levels 1 and 2; a forger that could not win would fail here."""
    model = tiny_model(2)
    for level in (1, 2):
        result = hash_search(model, scheme(1, level, 2), USURPER, usurper_images(), Work(100, 100, 0),
                             false_alarm=0.5)
        assert result.required == 1 and result.verdict.verified
        assert 1 <= result.work.hashes <= 30 and result.work.inferences == result.work.hashes
        assert torch.equal(result.claim["y"], rose_labels(USURPER, result.claim["x"], 2, level))


def test_level_2_hash_search_spends_its_budget_exactly_and_forges_nothing() -> None:
    s, tries = 20, 180
    budget = Work(inferences=s + tries, hashes=s + tries * relabel_cost(2, 1, s))
    result = hash_search(tiny_model(10), scheme(s, 2), USURPER, usurper_images(), budget)
    assert result.work == budget and result.work.fits(budget)
    assert result.required == required_matches(s, 0.1, 1e-6) and not result.verdict.verified


def test_a_budget_that_cannot_pay_for_the_first_claim_spends_nothing() -> None:
    result = hash_search(tiny_model(10), scheme(20, 1), USURPER, usurper_images(), Work(19, 100, 0))
    assert result.work == Work() and not result.verdict.verified


def test_adversarial_forger_wins_level_0_and_loses_level_2_within_its_budget() -> None:
    model, budget = tiny_model(10), Work(inferences=2_000, hashes=20_000, backprops=5_000)
    won = adversarial(model, scheme(20, 0), USURPER, usurper_images(), budget, epsilon=255, step_size=16)
    assert won.verdict.verified and 0 < won.work.backprops and won.work.fits(budget)
    assert won.work.hashes == 20  # level 0: the key's labels, derived once
    lost = adversarial(model, scheme(20, 2), USURPER, usurper_images(), budget, epsilon=255, step_size=16)
    assert not lost.verdict.verified and lost.work.fits(budget)
    assert lost.work.backprops > budget.backprops - 10 * 20  # it stopped for want of budget, not of trying
