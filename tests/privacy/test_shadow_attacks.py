"""Shadow-model membership attacks: LiRA's statistic against a hand-computed case, both attacks
find the members of a model that memorised them, and the shadow attack's scoring is ART's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
from art.estimators.classification import PyTorchClassifier
from torch import nn

from fedsec.models import mlp
from fedsec.privacy.base import AttackerData, MembershipInference
from fedsec.privacy.lira import LiRA, lira_scores, logit_confidence
from fedsec.privacy.metrics import roc_figures
from fedsec.privacy.shadow import ShadowModels
from fedsec.privacy.shadows import half_memberships
from fedsec.training import ClientConfig, train_local

CPU = torch.device("cpu")
MEMORISE = ClientConfig(local_epochs=40, batch_size=25, optimizer="adam", lr=0.01)


def labelled(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 8 x 8 uint8 images with random labels: only memorisation fits them."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=generator, dtype=torch.uint8), torch.randint(
        0, 10, (n,), generator=generator)


def test_logit_confidence_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    phi = logit_confidence(logits, torch.tensor([0, 1]))
    p0, p1 = math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2)
    torch.testing.assert_close(phi, torch.tensor([math.log(p0 / (1 - p0)), math.log(p1 / (1 - p1))]))
    assert phi[0].item() == pytest.approx(2 - math.log(2))


def test_lira_statistic_by_hand() -> None:
    """Four shadow models, the first two trained on both examples. Per example: example 0 has IN
    confidences 2, 4 (mean 3, std 1) and OUT 0, 2 (mean 1, std 1); at φ = 3 the log likelihood
    ratio is 0 − (−(3 − 1)² / 2) = 2 and the offline z-score (3 − 1) / 1 = 2. Global variance:
    IN values 2, 4, 1, 3 and OUT values 0, 2, −1, 1 both have variance 1.25; example 1 (IN mean 2,
    OUT mean 0) at φ = 2 scores ((2 − 0)² − 0) / (2 · 1.25) = 1.6."""
    shadow = torch.tensor([[2.0, 1.0], [4.0, 3.0], [0.0, -1.0], [2.0, 1.0]])
    keep = torch.tensor([[True, True], [True, True], [False, False], [False, False]])
    target = torch.tensor([3.0, 2.0])
    per_example = lira_scores(target, shadow, keep, "online", "per-example")
    assert per_example[0].item() == pytest.approx(2.0)
    assert lira_scores(target, shadow, keep, "offline", "per-example")[0].item() == pytest.approx(2.0)
    assert lira_scores(target, shadow, keep, "online", "global")[1].item() == pytest.approx(1.6)
    assert lira_scores(target, shadow, keep, "offline", "global")[1].item() == pytest.approx(2 / math.sqrt(1.25))


def test_each_example_is_in_half_the_shadow_models() -> None:
    keep = half_memberships(6, 500, torch.Generator().manual_seed(0))
    assert (keep.sum(dim=0) == 3).all()
    assert 200 < keep[0].sum() < 300


def attacker(members: tuple, nonmembers: tuple, pool: tuple) -> AttackerData:
    return AttackerData(*pool, torch.cat([members[0], nonmembers[0]]), torch.cat([members[1], nonmembers[1]]),
                        lambda: mlp((1, 8, 8), 10), MEMORISE, CPU)


@pytest.fixture(scope="module")
def memorised() -> tuple[nn.Module, AttackerData]:
    """A model that memorised 100 random images, the attacker's candidates (those 100, then 100
    others) and 100 images of its own."""
    torch.set_num_threads(1)  # before the per-test fixture; tests/conftest.py restores the count
    members, nonmembers, pool = labelled(100, 1), labelled(100, 2), labelled(100, 3)
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10)
    train_local(model, *members, MEMORISE, torch.Generator().manual_seed(0), CPU)
    return model, attacker(members, nonmembers, pool)


@pytest.mark.parametrize(("attack", "least_auc"), [
    (LiRA(LiRA.Params(shadow_models=4)), 0.8),
    (LiRA(LiRA.Params(shadow_models=4, variant="offline")), 0.8),
    (ShadowModels(ShadowModels.Params(shadow_models=4, attack_epochs=30)), 0.7),
], ids=["lira-online", "lira-offline", "shadow"])
def test_members_of_a_memorising_model_are_found(
    attack: MembershipInference, least_auc: float, memorised: tuple[nn.Module, AttackerData]
) -> None:
    model, data = memorised
    attack.prepare(data, torch.Generator().manual_seed(0))
    scores = attack.scores(model, data.candidates_x.float() / 255, data.candidates_y)
    figures = roc_figures(scores[:100], scores[100:], (0.01,))
    assert figures.auc > least_auc
    assert figures.tpr_at_fpr[0.01] > 0.05  # above the chance line (TPR = FPR)


def test_lira_scores_only_its_candidates(memorised: tuple[nn.Module, AttackerData]) -> None:
    model, data = memorised
    attack = LiRA(LiRA.Params(shadow_models=2, epochs=1))
    with pytest.raises(ValueError, match="candidates it was prepared with"):
        attack.scores(model, data.candidates_x[:5].float() / 255, data.candidates_y[:5])


def test_shadow_attack_scores_as_art_does(memorised: tuple[nn.Module, AttackerData]) -> None:
    """Given the same shadow outputs, the attack's scores of the target are those of ART's
    MembershipInferenceBlackBox trained on them and querying the target through ART's own
    estimator (its predictions on the same images)."""
    model, data = memorised
    generator = torch.Generator().manual_seed(4)
    member = torch.rand(150, 10, generator=generator).pow(4).softmax(dim=1)
    nonmember = torch.rand(150, 10, generator=generator).softmax(dim=1)
    labels = torch.randint(0, 10, (300,), generator=generator)
    ours = ShadowModels(ShadowModels.Params(attack_epochs=5))
    ours.fit_attack(member, labels[:150], nonmember, labels[150:], data, seed=7)
    scored = ours.scores(model, data.candidates_x.float() / 255, data.candidates_y)

    estimator = PyTorchClassifier(nn.Sequential(model, nn.Softmax(dim=1)), nn.CrossEntropyLoss(), (1, 8, 8), 10,
                                  device_type="cpu")
    theirs = MembershipInferenceBlackBox(estimator, input_type="prediction", nn_model_epochs=5)
    torch.manual_seed(7)
    np.random.seed(7)
    theirs.fit(y=labels[:150].numpy(), test_y=labels[150:].numpy(), pred=member.numpy(), test_pred=nonmember.numpy())
    expected = theirs.infer(data.candidates_x.float().numpy() / 255, data.candidates_y.numpy(), probabilities=True)
    np.testing.assert_allclose(scored.numpy(), np.asarray(expected).reshape(-1), rtol=1e-4, atol=1e-6)
