"""Model poisoning attacks: each rewrites an update as its paper says."""

import pytest
import torch

from fedsec.attacks.model import MODEL_ATTACKS, ModelAttackContext, build_model_attack
from fedsec.attacks.model.alie import alie_z
from fedsec.attacks.model.constrain_scale import anomaly_evasion_loss, project_l2_ball
from fedsec.attacks.model.neurotoxin import Neurotoxin

D = 100


def benign(m: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, D, generator=g) * torch.linspace(0.1, 2.0, D) + 0.3


def context(updates: torch.Tensor | None = None, n: int = 10, m: int = 2, lr: float = 1.0, seed: int = 0):
    """n clients, all sampled, m of them malicious, 100 examples each."""
    return ModelAttackContext(
        global_vector=torch.zeros(D),
        benign_updates=updates,
        num_clients=n,
        num_malicious=m,
        num_clients_per_round=n,
        round_examples=100 * n,
        own_examples=100,
        server_lr=lr,
        generator=torch.Generator().manual_seed(seed),
    )


def attack(name: str, **params: object):
    return build_model_attack({"name": name, **params})


@pytest.mark.parametrize("name", MODEL_ATTACKS.names())
def test_every_attack_keeps_shape_dtype_and_input(name: str) -> None:
    updates = benign().double()
    own = updates[0].clone()
    out = attack(name)(updates[0], context(updates))
    assert out.shape == (D,) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert torch.equal(updates[0], own)


def test_context_rejects_inconsistent_shapes_and_counts() -> None:
    with pytest.raises(ValueError, match="benign_updates"):
        context(torch.zeros(3, D + 1))
    with pytest.raises(ValueError, match="attackers"):
        context(n=3, m=4)


def test_scaling_multiplies_the_norm_by_gamma() -> None:
    u = benign()[0]
    assert attack("scaling", gamma=3.5)(u, context()).norm() == pytest.approx(3.5 * u.norm().item(), rel=1e-6)
    assert torch.allclose(attack("scaling", weighting="clients")(u, context(n=10, lr=0.5)), 20 * u)  # n / η


def test_constrain_scale_lands_on_or_inside_the_ball() -> None:
    u = benign()[0]
    out = attack("constrain-scale", radius=1.0)(u, context())
    assert out.norm() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(out / out.norm(), u / u.norm(), atol=1e-6)
    small = attack("constrain-scale", gamma=1.0, radius=10 * u.norm().item())(u, context())
    assert torch.equal(small, u)


def test_constrain_scale_default_radius_is_the_median_benign_norm() -> None:
    updates = benign(5)
    out = attack("constrain-scale")(updates[0], context(updates))
    assert out.norm() == pytest.approx(updates.norm(dim=1).median().item(), rel=1e-5)


def test_projection_around_a_center_and_the_evasion_loss() -> None:
    center, w = torch.full((D,), 5.0), torch.full((D,), 8.0)
    p = project_l2_ball(w, 2.0, center)
    assert (p - center).norm() == pytest.approx(2.0, rel=1e-5)
    assert torch.equal(project_l2_ball(center + 0.01, 2.0, center), center + 0.01)
    w.requires_grad_(True)
    loss = anomaly_evasion_loss(w, center, 0.2)  # (1 - α)/α · ‖w − c‖ = 4 · 3·√D
    loss.backward()
    assert loss.item() == pytest.approx(4 * 3 * D**0.5)
    assert torch.allclose(w.grad, torch.full((D,), 4 / D**0.5))


def test_neurotoxin_zeroes_exactly_the_top_fraction_of_the_benign_reference() -> None:
    reference = torch.randn(D, generator=torch.Generator().manual_seed(3))
    a = attack("neurotoxin", top_fraction=0.05)
    assert isinstance(a, Neurotoxin)
    mask = a.gradient_mask(reference)
    top = reference.abs().topk(5).indices
    assert (~mask).sum() == 5 and not mask[top].any()
    update = torch.ones(D)
    out = a(update, context(reference.unsqueeze(0)))
    assert (out[top] == 0).all() and (out == 0).sum() == 5 and (out[mask] == 1).all()


def test_training_hooks_are_off_unless_the_attack_changes_local_training() -> None:
    reference, center = torch.randn(D), torch.full((D,), 5.0)
    assert attack("scaling").gradient_mask(reference) is None and attack("scaling").training_penalty(center) is None
    assert attack("constrain-scale", alpha=1.0).training_penalty(center) is None  # scale-only
    penalty = attack("constrain-scale").training_penalty(center)  # α = 0.5: weight 1
    assert penalty is not None and penalty(torch.full((D,), 8.0)).item() == pytest.approx(3 * D**0.5)
    assert attack("neurotoxin").training_penalty(center) is None


def test_gaussian_noise_is_reproducible_and_has_the_given_std() -> None:
    u = torch.zeros(D * 100)
    counts = {"num_clients": 10, "num_malicious": 1, "num_clients_per_round": 10, "round_examples": 10, "own_examples": 1}
    big = ModelAttackContext(global_vector=u, **counts, generator=torch.Generator().manual_seed(1))
    out = attack("gaussian", sigma=2.0)(u, big)
    assert out.std().item() == pytest.approx(2.0, rel=0.05)
    again = ModelAttackContext(global_vector=u, **counts, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, attack("gaussian", sigma=2.0)(u, again))
    v = benign()[0]
    assert torch.equal(attack("gaussian", sigma=0.0)(v, context()), v)
    replaced = attack("gaussian", mode="replace")(v, context(seed=4))
    assert torch.equal(replaced, attack("gaussian", mode="replace")(torch.zeros(D), context(seed=4)))


def test_sign_flip() -> None:
    u = benign()[0]
    assert torch.equal(attack("sign-flip", scale=4.0)(u, context()), -4.0 * u)


@pytest.mark.parametrize(
    ("n", "m", "z"),
    [(50, 12, 0.5828415), (10, 2, 0.2533471), (20, 5, 0.5244005)],  # Φ⁻¹(36/50), Φ⁻¹(6/10), Φ⁻¹(14/20)
)
def test_alie_z_from_n_and_m(n: int, m: int, z: float) -> None:
    assert alie_z(n, m) == pytest.approx(z, abs=1e-6)


def test_alie_z_does_not_exist_for_a_malicious_majority() -> None:
    with pytest.raises(ValueError):
        alie_z(10, 6)


def test_alie_is_mean_plus_z_population_std_or_the_ndss21_variant() -> None:
    updates = benign()
    out = attack("alie")(updates[0], context(updates, n=50, m=12))
    expected = updates.mean(0) + alie_z(50, 12) * updates.std(0, correction=0)
    assert torch.allclose(out, expected, atol=1e-6)
    ndss21 = attack("alie", z=1.5, variant="ndss21")(updates[0], context(updates))
    assert torch.allclose(ndss21, updates.mean(0) - 1.5 * updates.std(0))


def test_ipm_is_minus_epsilon_times_the_benign_mean() -> None:
    updates = benign()
    assert torch.allclose(attack("ipm", epsilon=0.5)(updates[0], context(updates)), -0.5 * updates.mean(0))
    assert torch.allclose(attack("ipm")(updates[0], context()), -0.1 * updates[0])


@pytest.mark.parametrize("perturbation", ["unit-vector", "std", "sign"])
def test_min_max_reaches_but_does_not_cross_the_largest_benign_distance(perturbation: str) -> None:
    updates = benign().double()
    out = attack("minmax", perturbation=perturbation)(updates[0], context(updates))
    bound = torch.cdist(updates, updates).square().max()
    reached = (updates - out).square().sum(1).max()
    assert reached <= bound * (1 + 1e-9) and reached >= bound * (1 - 1e-6)
    assert not torch.allclose(out, updates.mean(0))


@pytest.mark.parametrize("bound", ["min", "max"])
@pytest.mark.parametrize("perturbation", ["unit-vector", "std", "sign"])
def test_min_sum_reaches_but_does_not_cross_its_benign_sum(perturbation: str, bound: str) -> None:
    updates = benign().double()
    out = attack("minsum", perturbation=perturbation, bound=bound)(updates[0], context(updates))
    sums = torch.cdist(updates, updates).square().sum(1)
    limit = sums.min() if bound == "min" else sums.max()
    reached = (updates - out).square().sum()
    assert reached <= limit * (1 + 1e-9) and reached >= limit * (1 - 1e-6)


def test_min_max_direction_follows_the_perturbation() -> None:
    updates = benign()
    out = attack("minmax", perturbation="sign")(updates[0], context(updates))
    shift = out - updates.mean(0)
    assert torch.allclose(shift / shift.abs().max(), -updates.mean(0).sign(), atol=1e-5)


@pytest.mark.parametrize("name", ["minmax", "minsum"])
def test_agr_agnostic_attacks_need_a_benign_spread(name: str) -> None:
    u = benign()[0]
    assert torch.allclose(attack(name)(u, context()), u)
