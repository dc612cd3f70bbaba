"""Weight-space detection: the information criterion picks what scikit-learn's scores pick, clean
and backdoored populations separate (AUC), the threshold keeps the chosen false-rejection rate,
and the screening defense rejects backdoored local models after its warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from torch import Tensor, nn

from fedsec.defenses import DEFENSES, Kind, UpdateBatch
from fedsec.inspection import build_inspector
from fedsec.inspection.weight_space import WeightSpace, fit_density, neuron_vectors, select_mixture

NEURONS, INPUTS, TARGET = 10, 32, 3
BASE = torch.randn(NEURONS, INPUTS, generator=torch.Generator().manual_seed(7))


def population(count: int, seed: int, backdoored: bool = False) -> list[Tensor]:
    """Classifier weights (10, 32) of ``count`` models: one point of convergence plus training noise;
    a backdoor moves the target neuron's incoming weights along a fixed direction."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(INPUTS, generator=torch.Generator().manual_seed(8))
    models = []
    for _ in range(count):
        w = BASE + 0.1 * torch.randn(NEURONS, INPUTS, generator=g)
        if backdoored:
            w[TARGET] += 0.5 * direction
        models.append(w)
    return models


def test_neuron_vectors_read_rows_backward_and_columns_forward() -> None:
    w = torch.arange(24.0).view(2, 3, 2, 2)
    assert torch.equal(neuron_vectors(w, "backward"), w.view(2, 12))
    assert torch.equal(neuron_vectors(w, "forward"), w.view(2, 12).T)


@pytest.mark.parametrize("criterion", ["bic", "aic"])
def test_the_selected_number_of_components_minimises_sklearns_criterion(criterion: str) -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    z = np.concatenate([c + rng.normal(size=(60, 2)) for c in centres])
    candidates = [1, 2, 3, 4, 6]
    chosen = select_mixture(z, candidates, criterion, "full", seed=0)
    scores = [getattr(GaussianMixture(k, random_state=0).fit(z), criterion)(z) for k in candidates]
    assert chosen.n_components == candidates[int(np.argmin(scores))] == 3


def test_clean_and_backdoored_populations_separate() -> None:
    density = fit_density([neuron_vectors(w, "backward") for w in population(60, seed=0)], variance=0.95,
                          candidates=[1, 2, 5, 10, 12], criterion="bic", covariance="full", false_rejection=0.1,
                          holdout=0.3, seed=0)
    clean = [density.score(neuron_vectors(w, "backward")) for w in population(30, seed=1)]
    bad = [density.score(neuron_vectors(w, "backward")) for w in population(30, seed=2, backdoored=True)]
    labels = [0] * len(clean) + [1] * len(bad)
    assert roc_auc_score(labels, -np.array(clean + bad)) > 0.95
    assert np.mean(np.array(clean) < density.threshold) <= 0.25  # false rejections near the chosen 10%
    assert np.mean(np.array(bad) < density.threshold) >= 0.8


def _linear(weight: Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(INPUTS, NEURONS))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model


def test_the_inspector_flags_a_backdoored_model_and_names_its_target() -> None:
    inspector = build_inspector({"name": "weight-space", "references": 20, "components": [1, 2, 5, 10, 12]})
    assert isinstance(inspector, WeightSpace) and inspector.references() == 20
    inspector.fit([_linear(w) for w in population(20, seed=0)])
    x, y = torch.zeros(1, 1, 1, INPUTS, dtype=torch.uint8), torch.zeros(1, dtype=torch.long)
    bad = inspector.inspect(_linear(population(1, seed=3, backdoored=True)[0]), x, y, torch.Generator())
    clean = inspector.inspect(_linear(population(1, seed=4)[0]), x, y, torch.Generator())
    assert bad.backdoored and bad.score < bad.threshold and bad.targets == (TARGET,)
    assert not clean.backdoored and clean.targets == () and clean.score >= clean.threshold
    assert len(bad.class_scores) == NEURONS and bad.queries == 0


def _rows(weights: list[Tensor], head: int = 50) -> Tensor:
    """Flattened model vectors: ``head`` other values, the classifier's weight, then its bias."""
    return torch.stack([torch.cat([torch.zeros(head), w.reshape(-1), torch.zeros(NEURONS)]) for w in weights])


def test_the_screen_rejects_backdoored_local_models_after_its_warm_up() -> None:
    cls = DEFENSES.get("weight-space")
    assert cls.kind is Kind.SCREEN and cls.rejects
    screen = cls(warmup_rounds=2, neurons=NEURONS, inputs=INPUTS, components=[1, 2, 5, 10, 12])
    for seed in (10, 11):
        batch = screen(UpdateBatch.of(_rows(population(12, seed))))
        assert batch.accepted.all() and "weight-space" not in batch.scores
    mixed = UpdateBatch.of(_rows(population(8, 12) + population(2, 13, backdoored=True)))
    decided = screen(mixed)
    assert not decided.accepted[8:].any() and decided.accepted[:8].sum() >= 6
    assert torch.isfinite(decided.scores["weight-space"]).all()
    resumed = cls(warmup_rounds=2, neurons=NEURONS, inputs=INPUTS, components=[1, 2, 5, 10, 12])
    resumed.load_state_dict(screen.state_dict())
    assert torch.equal(resumed(mixed).accepted, decided.accepted)


def test_the_screen_refuses_a_layer_outside_the_vector() -> None:
    screen = DEFENSES.get("weight-space")(warmup_rounds=1, neurons=NEURONS, inputs=INPUTS, offset=400)
    with pytest.raises(ValueError, match="does not fit a model of 380 values"):
        screen(UpdateBatch.of(_rows(population(2, 0), head=50)))
