"""Clean-label attacks crafted with the model: the objectives decrease, budgets and labels hold,
and the crafting agrees with a hand-computed step and with IBM ART on the same inputs."""

import numpy as np
import pytest
import torch
from torch import nn

from fedsec.attacks.data import build_data_attack
from fedsec.attacks.data.base import CraftingContext
from fedsec.attacks.data.collision import feature_map, select_targets
from fedsec.attacks.data.convex_polytope import polytope_collision, polytope_loss, project_simplex
from fedsec.attacks.data.hidden_trigger import hidden_trigger_collision, matched_pairs, paste_patch
from fedsec.attacks.data.poison_frogs import collision_beta, feature_collision
from fedsec.scenario import ScenarioError, parse_scenario

SHAPE = (1, 8, 8)


def tiny_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 3))


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_poison_frogs_objective_decreases_and_features_approach_the_target() -> None:
    features = feature_map(tiny_model())
    base, target = images(4, 1), images(4, 2)
    poisons, history = feature_collision(features, base, target, beta0=0.25, step=1.0, iterations=60, decay=0.5,
                                         pixel_scale=1.0)
    assert all(b <= a for a, b in zip(history, history[1:], strict=False))
    assert history[-1] < 0.5 * history[0]
    before = (features(base) - features(target)).norm(dim=1)
    after = (features(poisons) - features(target)).norm(dim=1)
    assert (after < before).all() and poisons.min() >= 0 and poisons.max() <= 1


def test_poison_frogs_step_matches_the_hand_computed_forward_backward_split() -> None:
    """Linear features f(x) = W x: one step is x − λ·2Wᵀ W (x − t), then (x̂ + λβ b) / (1 + λβ)."""
    torch.manual_seed(3)
    layer = nn.Linear(64, 5, bias=False)
    model = nn.Sequential(nn.Flatten(), layer, nn.Linear(5, 2))
    base, target = images(1, 4) * 0.5 + 0.25, images(1, 5) * 0.5 + 0.25
    step = 1e-3
    poison, history = feature_collision(feature_map(model), base, target, 0.25, step, iterations=1, decay=0.5,
                                        pixel_scale=1.0)
    w = layer.weight.detach().double().numpy()
    b, t = base.double().flatten().numpy(), target.double().flatten().numpy()
    beta = 0.25 * (5 / 64) ** 2
    forward = b - step * 2 * w.T @ w @ (b - t)
    expected = np.clip((forward + step * beta * b) / (1 + step * beta), 0, 1)
    assert history[1] < history[0]  # the step was accepted
    np.testing.assert_allclose(poison.flatten().double().numpy(), expected, atol=1e-6)
    assert collision_beta(0.25, 2048, 299 * 299 * 3) == pytest.approx(0.25 * 2048**2 / (299 * 299 * 3) ** 2)


def test_poison_frogs_feature_distance_agrees_with_art_activations() -> None:
    from art.attacks.poisoning import FeatureCollisionAttack
    from art.estimators.classification import PyTorchClassifier

    model = tiny_model()
    classifier = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=3,
                                   clip_values=(0.0, 1.0))
    base, target = images(3, 6), images(1, 7)
    ours = feature_map(model)(base) - feature_map(model)(target)
    art = FeatureCollisionAttack(classifier, target.numpy(), feature_layer=2, max_iter=1, verbose=False)
    theirs = classifier.get_activations(base.numpy(), 2, 3) - art.estimator.get_activations(target.numpy(), 2, 1)
    np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=1e-5, atol=1e-6)


def test_bullseye_loss_agrees_with_art_loss_from_center() -> None:
    """ART's loss (linear transfer learning, one feature layer) is ||mean φ(x) − φ(t)|| / ||φ(t)||;
    ours with coefficients 1/K is half its square."""
    from art.attacks.poisoning.bullseye_polytope_attack import loss_from_center
    from art.estimators.classification import PyTorchClassifier

    model = tiny_model()
    classifier = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=3,
                                   clip_values=(0.0, 1.0))
    poisons, target = images(5, 8), images(1, 9)
    features = feature_map(model)
    target_features = features(target)
    ours = polytope_loss(features(poisons).unsqueeze(0), target_features, torch.full((1, 5), 0.2))
    theirs = loss_from_center([classifier], [target_features], lambda: poisons, 1, False, 2)
    assert float(ours) == pytest.approx(0.5 * float(theirs) ** 2, rel=1e-5)


@pytest.mark.parametrize("learn_coefficients", [True, False])
def test_polytope_loss_decreases_within_the_epsilon_ball(learn_coefficients: bool) -> None:
    models = [feature_map(tiny_model(s)) for s in (0, 1)]
    bases, targets = images(10, 10).view(2, 5, *SHAPE), images(2, 11)
    poisons, history = polytope_collision(models, bases, targets, epsilon=0.05, lr=0.02, iterations=30,
                                          learn_coefficients=learn_coefficients)
    assert history[-1] < 0.8 * history[0]
    assert (poisons - bases).abs().max() <= 0.05 + 1e-6
    assert poisons.min() >= 0 and poisons.max() <= 1


def test_simplex_projection_matches_a_hand_computed_case() -> None:
    projected = project_simplex(torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.0, -1.0], [0.2, 0.3, 0.5]]))
    torch.testing.assert_close(projected, torch.tensor([[1 / 3] * 3, [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]))


def test_hidden_trigger_pairs_greedily_and_stays_in_budget() -> None:
    pairs = matched_pairs(torch.tensor([[0.0], [1.0], [1.1]]), torch.tensor([[1.05], [0.1], [5.0]]))
    assert pairs.tolist() == [1, 0, 2]  # 1.1→1.05 first, then 0→0.1, then the one left
    features = feature_map(tiny_model())
    poisons, history = hidden_trigger_collision(features, images(6, 12), images(6, 13), epsilon=16 / 255, lr=0.05,
                                                iterations=40, decay=0.95, decay_every=20)
    assert history[-1] < history[0]
    assert (poisons - images(6, 12)).abs().max() <= 16 / 255 + 1e-6


def partition(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(14), dtype=torch.uint8)
    return x, torch.arange(n) % 3


def context(models: int = 1) -> CraftingContext:
    test_x, test_y = partition(30)
    return CraftingContext([tiny_model(s) for s in range(models)], test_x, test_y, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "poison-frogs", "poisons": 2, "iterations": 5, "watermark": 0.3},
        {"name": "convex-polytope", "poisons": 3, "iterations": 5, "surrogates": 2},
        {"name": "bullseye-polytope", "poisons": 3, "iterations": 5, "epsilon": 8 / 255},
        {"name": "hidden-trigger", "poison_fraction": 0.5, "iterations": 5, "patch_size": 3},
    ],
)
def test_crafted_poisons_keep_their_labels_and_budget(spec: dict) -> None:
    x, y = partition()
    attack = build_data_attack({**spec, "num_classes": 3, "target_label": 0,
                                **({"num_targets": 3} if spec["name"] != "hidden-trigger" else {})})
    out = attack.craft(x, y, context(attack.surrogate_models()))
    assert torch.equal(out.y, y)
    assert (y[out.mask] == 0).all() and int(out.mask.sum()) == attack.poison_count(y) > 0
    assert torch.equal(out.x[~out.mask], x[~out.mask]) and not torch.equal(out.x[out.mask], x[out.mask])
    epsilon = getattr(attack.params, "epsilon", None)
    if epsilon is not None:
        assert (out.x.int() - x.int()).abs().max() <= epsilon * 255 + 0.5


@pytest.mark.parametrize("n", [6, 7, 20, 60])
def test_poison_count_is_what_crafting_plants_when_bases_run_short(n: int) -> None:
    """With 3 poisons per target: 2 base images craft none, 3 one target's worth, 7 two targets' worth."""
    x, y = partition(n)
    attack = build_data_attack({"name": "poison-frogs", "num_classes": 3, "target_label": 0, "num_targets": 3,
                                "poisons": 3, "iterations": 1})
    out = attack.craft(x, y, context())
    assert int(out.mask.sum()) == attack.poison_count(y) == min(3, int((y == 0).sum()) // 3) * 3


def test_each_target_gets_its_own_block_of_poisons() -> None:
    """Poisons are written back to the rows of the bases they were crafted from, ``poisons`` per
    target: with a collide that returns the target itself, every target appears exactly that often.
    (Reading the poisons as x[mask], in row order, does not pair them with their targets.)"""
    x, y = partition()
    attack = build_data_attack({"name": "poison-frogs", "num_classes": 3, "target_label": 0, "target_class": 1,
                                "num_targets": 3, "poisons": 2, "iterations": 1})
    attack.collide = lambda models, bases, targets: targets.unsqueeze(1).expand_as(bases)
    ctx = context()
    out = attack.craft(x, y, ctx)
    targets = ctx.test_x[attack.asr_mask(ctx.test_y)]
    poisons = out.x[out.mask]
    matches = (poisons.unsqueeze(1) == targets.unsqueeze(0)).flatten(2).all(2)  # (poisons, targets)
    assert matches.sum(1).tolist() == [1] * 6 and matches.sum(0).tolist() == [2, 2, 2]


def test_targets_are_the_same_for_the_client_and_the_evaluator_and_scored_clean() -> None:
    attack = build_data_attack({"name": "bullseye-polytope", "num_classes": 3, "target_label": 0,
                                "target_class": 2, "num_targets": 4, "target_seed": 5})
    _, y = partition(30)
    mask = attack.asr_mask(y)
    assert mask.sum() == 4 and (y[mask] == 2).all()
    assert torch.equal(mask.nonzero().flatten(), select_targets(y, 2, 4, 5))
    assert set(attack.test_triggers()) == {"targeted_success"}
    assert torch.equal(attack.target_labels(y[mask]), torch.zeros(4, dtype=torch.long))
    x, _ = partition(4)
    assert torch.equal(attack.apply_test_trigger(x), x)


def test_hidden_trigger_shows_the_patch_at_test_time_only_on_sources() -> None:
    attack = build_data_attack({"name": "hidden-trigger", "num_classes": 3, "target_label": 0,
                                "source_class": 1, "patch_size": 3})
    x, y = partition(9)
    triggered = attack.apply_test_trigger(x)
    assert ((triggered != x).flatten(1).sum(1) <= 9).all()
    assert torch.equal(triggered, attack.apply_test_trigger(x))  # same places every evaluation
    assert torch.equal(attack.asr_mask(y), y == 1)
    patch = torch.full((1, 2, 2), 255, dtype=torch.uint8)
    pasted = paste_patch(torch.zeros(5, 1, 6, 6, dtype=torch.uint8), patch, torch.Generator().manual_seed(0))
    assert (pasted.flatten(1).sum(1) == 4 * 255).all()


@pytest.mark.parametrize(
    ("attack", "field"),
    [
        ({"name": "poison-frogs", "target_class": 0}, "must differ from target_label"),
        ({"name": "poison-frogs", "watermark": 1.0}, "watermark"),
        ({"name": "convex-polytope", "epsilon": 0}, "epsilon"),
        ({"name": "bullseye-polytope", "surrogates": 0}, "surrogates"),
        ({"name": "bullseye-polytope", "poison_fraction": 0.3}, "poison_fraction"),
        ({"name": "hidden-trigger", "source_class": 10}, "source_class 10 is not below num_classes"),
        ({"name": "poison-frogs", "poison": 2}, "poison"),
    ],
)
def test_scenario_names_the_bad_parameter(attack: dict, field: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario({"name": "t", "attack": {"ids": [0], "data": attack}})
    assert len(err.value.lines) == 1 and field in err.value.lines[0] and "attack.data" in err.value.lines[0]


def test_a_malicious_client_crafts_on_the_global_models_it_received() -> None:
    from fedsec.adversary import Attacker, received_models
    from fedsec.client import LocalTrainer
    from fedsec.federated_data import federated_data
    from fedsec.params import model_vector

    s = parse_scenario({
        "name": "crafting", "seed": 1, "rounds": 2, "resources": {"device": "cpu"},
        "data": {"dataset": "synthetic", "num_clients": 4, "partitioner": {"name": "iid"}},
        "model": {"name": "mlp"}, "client": {"batch_size": 50},
        "attack": {"ids": [1], "data": {"name": "convex-polytope", "target_class": 3, "num_targets": 2,
                                        "iterations": 3, "surrogates": 2}},
    })
    trainer = LocalTrainer(s, federated_data(s.data, s.seed), torch.device("cpu"))
    first = torch.full_like(model_vector(trainer.model), 0.01)
    honest = trainer.train(1, 1, first).update
    poisoned = Attacker(s, 1, 1, (0, 1, 2, 3)).train(trainer, first).update
    assert torch.isfinite(poisoned).all() and not torch.equal(poisoned, honest)
    second = first + 0.01
    Attacker(s, 1, 2, (0, 1, 2, 3)).train(trainer, second)
    seen = received_models(s, 1, 2, second, 2)
    assert len(seen) == 2 and torch.equal(seen[0], second) and torch.equal(seen[1], first)
    assert len(received_models(s, 1, 3, second + 1, 2)) == 2  # the oldest is dropped
