"""Loss-threshold membership inference: it finds the members of an overfit model, guesses on a
model that saw neither set, and scores examples by the loss ART computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from sklearn.metrics import roc_auc_score
from torch import nn

from fedsec.models import mlp
from fedsec.privacy.loss_threshold import LossThreshold
from fedsec.privacy.metrics import roc_figures
from fedsec.training import ClientConfig, train_local


def labelled(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 8 x 8 uint8 images with random labels: only memorisation fits them."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=generator, dtype=torch.uint8), torch.randint(
        0, 10, (n,), generator=generator)


def figures(model: nn.Module, members: tuple, nonmembers: tuple) -> tuple[float, float, float]:
    """AUC, TPR at 1% FPR and the advantage TPR - FPR at Yeom's threshold."""
    attack = LossThreshold(LossThreshold.Params())
    scores = [attack.scores(model, x.float() / 255, y) for x, y in (members, nonmembers)]
    threshold = attack.threshold(scores[0])
    advantage = (scores[0] >= threshold).float().mean() - (scores[1] >= threshold).float().mean()
    roc = roc_figures(scores[0], scores[1], (0.01,))
    return roc.auc, roc.tpr_at_fpr[0.01], advantage.item()


def test_members_of_an_overfit_model_are_found() -> None:
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10)
    members, nonmembers = labelled(200, 1), labelled(200, 2)
    cfg = ClientConfig(local_epochs=150, batch_size=50, optimizer="adam", lr=0.01)
    train_local(model, *members, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    auc, tpr, advantage = figures(model, members, nonmembers)
    assert auc > 0.9
    assert tpr > 0.02  # above the chance line (TPR = FPR)
    assert advantage > 0.5


def test_a_model_that_saw_neither_set_gives_chance() -> None:
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10)
    auc, _, advantage = figures(model, labelled(1000, 3), labelled(1000, 4))
    assert abs(auc - 0.5) < 0.05
    assert abs(advantage) < 0.1


def test_threshold_parameter_is_a_loss() -> None:
    attack = LossThreshold(LossThreshold.Params(threshold=0.25))
    assert attack.threshold(torch.tensor([-3.0, -1.0])) == -0.25
    assert LossThreshold(LossThreshold.Params()).threshold(torch.tensor([-3.0, -1.0])) == -2.0


def test_scores_are_arts_losses_and_the_auc_sklearns() -> None:
    """ART has no loss-threshold attack; its estimator's per-example loss (the feature of its
    loss-based attacks) is the negated score, and the AUC on it is sklearn's."""
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10)
    (mx, my), (nx, ny) = labelled(300, 5), labelled(300, 6)
    train_local(model, mx, my, ClientConfig(local_epochs=20, batch_size=50, optimizer="adam", lr=0.01),
                torch.Generator().manual_seed(0), torch.device("cpu"))
    art = PyTorchClassifier(model, nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu")
    attack = LossThreshold(LossThreshold.Params(batch_size=64))
    x = torch.cat([mx, nx]).float() / 255
    y = torch.cat([my, ny])
    ours = attack.scores(model, x, y)
    theirs = art.compute_loss(x.numpy(), y.numpy(), reduction="none")
    np.testing.assert_allclose(-ours.numpy(), theirs, rtol=1e-5, atol=1e-6)
    auc = roc_figures(ours[:300], ours[300:], (0.01,)).auc
    assert auc == pytest.approx(roc_auc_score(np.r_[np.ones(300), np.zeros(300)], -theirs), abs=1e-6)
