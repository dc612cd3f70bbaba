"""Label-only membership inference: the augmentations are the authors' (their shift order, scipy's
shift and rotation on their image layout), magnitude 0 with counting is ART's gap attack, and the
attack finds the members of a model that memorised them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.inference.membership_inference import LabelOnlyGapAttack
from art.estimators.classification import PyTorchClassifier
from scipy import ndimage
from torch import nn

from fedsec.models import mlp
from fedsec.privacy.base import AttackerData
from fedsec.privacy.label_only import LabelOnly, augmented, rotate, translate, translations
from fedsec.privacy.metrics import roc_figures
from fedsec.training import ClientConfig, train_local

CPU = torch.device("cpu")
MEMORISE = ClientConfig(local_epochs=40, batch_size=25, optimizer="adam", lr=0.01)

AUTHORS_SHIFTS = {  # create_translates(d) of the authors' utils.py, as (dy, dx)
    0: [(0, 0)],
    1: [(0, 0), (1, 0), (0, -1), (-1, 0), (0, 1)],
    2: [(0, 0), (2, 0), (1, -1), (0, -2), (-1, -1), (-2, 0), (-1, 1), (0, 2), (1, 1)],
    3: [(0, 0), (3, 0), (2, -1), (1, -2), (0, -3), (-1, -2), (-2, -1), (-3, 0), (-2, 1), (-1, 2), (0, 3), (1, 2),
        (2, 1)],
}


def labelled(n: int, seed: int, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images with random labels: only memorisation fits them."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, side, side), generator=generator, dtype=torch.uint8), torch.randint(
        0, 10, (n,), generator=generator)


@pytest.mark.parametrize("distance", sorted(AUTHORS_SHIFTS))
def test_shifts_are_the_authors(distance: int) -> None:
    assert translations(distance) == AUTHORS_SHIFTS[distance]


def test_augmentations_are_scipys_on_the_authors_layout() -> None:
    """The authors shift and turn (N, H, W, C) arrays with scipy; ours are (N, C, H, W)."""
    images = torch.rand(6, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    channels_last = images.permute(0, 2, 3, 1).numpy()
    for dy, dx in translations(2):
        theirs = ndimage.shift(channels_last, (0, dy, dx, 0), mode="nearest")
        np.testing.assert_allclose(translate(images, (dy, dx)).permute(0, 2, 3, 1).numpy(), theirs, atol=1e-6)
    theirs = ndimage.rotate(channels_last, 3.0, (1, 2), reshape=False)
    np.testing.assert_allclose(rotate(images, 3.0).permute(0, 2, 3, 1).numpy(), theirs, atol=1e-6)
    assert len(augmented(images, "rotate", 2)) == 5
    assert torch.equal(augmented(images, "rotate", 2)[2], images)


def test_counting_with_no_augmentation_is_arts_gap_attack() -> None:
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10)
    x, y = labelled(300, 1)
    train_local(model, x[:150], y[:150], MEMORISE, torch.Generator().manual_seed(0), CPU)
    attack = LabelOnly(LabelOnly.Params(attack_model="count", magnitude=0))
    ours = attack.scores(model, x.float() / 255, y)
    estimator = PyTorchClassifier(model, nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu")
    theirs = LabelOnlyGapAttack(estimator).infer(x.float().numpy() / 255, y.numpy())
    np.testing.assert_array_equal(ours.numpy(), theirs)
    assert 0 < theirs.sum() < len(theirs)
    assert attack.threshold(ours) == 1.0


@pytest.fixture(scope="module")
def memorised() -> tuple[nn.Module, AttackerData]:
    """A model that memorised 150 random 10 x 10 images, the attacker's candidates (those 150, then
    150 others) and 300 images of its own."""
    torch.set_num_threads(1)  # before the per-test fixture; tests/conftest.py restores the count
    members, nonmembers, pool = labelled(150, 1, 10), labelled(150, 2, 10), labelled(300, 3, 10)
    torch.manual_seed(0)
    model = mlp((1, 10, 10), 10)
    train_local(model, *members, MEMORISE, torch.Generator().manual_seed(0), CPU)
    data = AttackerData(*pool, torch.cat([members[0], nonmembers[0]]), torch.cat([members[1], nonmembers[1]]),
                        lambda: mlp((1, 10, 10), 10), MEMORISE, CPU)
    return model, data


@pytest.mark.parametrize(("params", "least_advantage"), [
    ({"shadow_models": 4}, 0.4),
    ({"shadow_models": 2, "augmentation": "rotate", "magnitude": 2}, 0.4),
    ({"attack_model": "count", "magnitude": 2}, None),  # random images are rarely right under every shift
], ids=["translate-nn", "rotate-nn", "translate-count"])
def test_members_of_a_memorising_model_are_found(
    params: dict, least_advantage: float | None, memorised: tuple[nn.Module, AttackerData]
) -> None:
    model, data = memorised
    attack = LabelOnly(LabelOnly.Params(**params))
    attack.prepare(data, torch.Generator().manual_seed(0))
    scores = attack.scores(model, data.candidates_x.float() / 255, data.candidates_y)
    figures = roc_figures(scores[:150], scores[150:], (0.01,))
    assert figures.auc > 0.75
    decided = scores >= attack.threshold(scores[:150])
    if least_advantage is not None:
        assert decided[:150].float().mean() - decided[150:].float().mean() >= least_advantage  # membership advantage


def test_nn_attack_needs_prepare(memorised: tuple[nn.Module, AttackerData]) -> None:
    model, data = memorised
    with pytest.raises(ValueError, match="only after prepare"):
        LabelOnly(LabelOnly.Params()).scores(model, data.candidates_x[:4].float() / 255, data.candidates_y[:4])
