"""Knockoff Nets' random policy against IBM ART's KnockoffNets on the same victim and thief
images: the same query set with the same labels, and fidelity within a few points."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fedsec.extraction import Oracle, build_extraction
from fedsec.extraction.base import agreement
from fedsec.extraction.knockoff import Knockoff

art = pytest.importorskip("art")
from art.attacks.extraction import KnockoffNets  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402


def art_classifier(model: nn.Module, lr: float = 1e-3) -> PyTorchClassifier:
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), lr=lr),
                             input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")


def test_knockoff_random_matches_art(victim, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = victim.pool[:400]
    start = victim.fresh(seed=3)
    spec = Knockoff.Params(budget=len(pool), output="labels", epochs=10, batch_size=64)
    oracle = Oracle(victim.model, spec.budget, spec.output)
    ours = build_extraction(spec).steal(oracle, pool, copy.deepcopy(start), torch.Generator().manual_seed(0))
    queried, _ = oracle.stream()

    thief = art_classifier(copy.deepcopy(start))
    fitted = {}
    fit = thief.fit

    def recording_fit(x: np.ndarray, y: np.ndarray, **kwargs) -> None:
        fitted["x"], fitted["y"] = x, y
        fit(x, y, **kwargs)

    monkeypatch.setattr(thief, "fit", recording_fit)
    np.random.seed(0)
    attack = KnockoffNets(art_classifier(victim.model), batch_size_fit=64, batch_size_query=64, nb_epochs=10,
                          nb_stolen=len(pool), sampling_strategy="random", use_probability=False)
    stolen = attack.extract(pool.numpy(), thieved_classifier=thief)

    # The same query set (the whole pool, in each one's random order) with the same labels.
    def by_image(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.lexsort(x.reshape(len(x), -1).numpy().T[::-1]))

    ours_order, art_x = by_image(queried), torch.from_numpy(fitted["x"])
    art_order = by_image(art_x.flatten(1))
    torch.testing.assert_close(queried[ours_order], art_x.flatten(1)[art_order])
    labels = victim.model(queried[ours_order].view(-1, 1, 8, 8)).argmax(1)
    assert torch.equal(torch.from_numpy(fitted["y"]).argmax(1)[art_order], labels)

    _, our_fidelity = agreement(ours, victim.model, victim.test_x, victim.test_y)
    _, art_fidelity = agreement(stolen.model.eval(), victim.model, victim.test_x, victim.test_y)
    assert our_fidelity > 0.6 and art_fidelity > 0.6
    assert abs(our_fidelity - art_fidelity) < 0.08
