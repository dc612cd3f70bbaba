"""The two paths of a defense agree: decisions made from scalars of the rows (the path that runs
on ciphertexts) are those made from the rows, here with the scalars computed in the clear."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fedsec.defenses import (
    DEFENSES,
    BelowMinimum,
    Defense,
    Scalar,
    ScalarBatch,
    TensorScalars,
    UpdateBatch,
    build_pipeline,
    encrypted_defense_problem,
    run_scalar_pipeline,
)
from fedsec.defenses.fedavg import FedAvg
from fedsec.defenses.flame import Flame

D = 200
ENCRYPTABLE = [name for name in DEFENSES.names() if DEFENSES.get(name)().encryptable]


def _round(n: int = 9, outliers: int = 2, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Updates (n, D) with ``outliers`` far and large rows first, example counts, a global model."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(D, generator=g) * 0.01
    updates = base + 0.01 * torch.randn(n, D, generator=g)
    updates[:outliers] = updates[:outliers] * -4.0 + 0.05
    weights = torch.randint(20, 200, (n,), generator=g).float()
    return updates, weights, 0.1 * torch.randn(D, generator=g)


def _both(specs: list[dict], n: int = 9, outliers: int = 2) -> tuple[UpdateBatch, ScalarBatch, torch.Tensor]:
    """Plaintext pipeline result, scalar pipeline result and the aggregate the latter gives."""
    updates, weights, global_vector = _round(n, outliers)
    plain = build_pipeline(specs)(
        UpdateBatch.of(updates, weights, global_vector, generator=torch.Generator().manual_seed(1))
    )
    decided = run_scalar_pipeline(
        build_pipeline(specs).stages, TensorScalars(updates, global_vector), weights, D,
        generator=torch.Generator().manual_seed(1),
    )
    aggregate = decided.final_coefficients().float() @ updates
    if decided.noise is not None:
        aggregate = aggregate + decided.noise
    return plain, decided, aggregate


CASES = [[{"name": name}] for name in ENCRYPTABLE] + [
    [{"name": "krum", "f": 2}],
    [{"name": "multi-krum", "f": 2}],
    [{"name": "multi-krum", "f": 1, "m": 3}],
    [{"name": "norm-clipping", "bound": 0.05}],
    [{"name": "dp-fedavg", "clip": 0.05, "noise_multiplier": 0.5}],
    [{"name": "flame", "distance": "updates"}],
    [{"name": "flame", "noise_lambda": 0.0}],
    [{"name": "flame", "membership": "widened"}],
    [{"name": "norm-clipping"}, {"name": "dp-noise", "sigma": 0.5, "relative": True}],
    [{"name": "norm-clipping", "bound": 0.5}, {"name": "multi-krum", "f": 2}, {"name": "dp-noise", "sigma": 0.001}],
    [{"name": "norm-clipping"}, {"name": "flame"}, {"name": "dp-noise"}],
]


@pytest.mark.parametrize("specs", CASES, ids=lambda specs: "+".join(str(s) for s in specs))
def test_scalar_path_decides_as_the_plaintext_path(specs: list[dict]) -> None:
    plain, decided, aggregate = _both(specs)
    assert torch.equal(decided.accepted, plain.accepted)
    assert plain.aggregate is not None
    assert torch.allclose(aggregate, plain.aggregate, rtol=1e-4, atol=1e-6)
    assert set(decided.scores) == set(plain.scores)
    for name, score in plain.scores.items():
        assert torch.allclose(decided.scores[name], score.double(), rtol=1e-4, atol=1e-6, equal_nan=True), name
    assert decided.info.keys() == plain.info.keys()
    for key, value in plain.info.items():
        assert decided.info[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key


def test_krum_rejects_the_outliers_on_scalars() -> None:
    _, decided, _ = _both([{"name": "multi-krum", "f": 2}])
    assert not decided.accepted[:2].any() and decided.accepted[2:].all()


def test_needs() -> None:
    assert Flame(distance="models").needs() == {Scalar.GRAM, Scalar.GLOBAL_PRODUCTS}
    assert Flame(distance="updates").needs() == {Scalar.GRAM}
    assert FedAvg().needs() == DEFENSES.get("dp-noise")().needs() == frozenset()
    assert DEFENSES.get("norm-clipping")().needs() == {Scalar.NORMS}
    assert DEFENSES.get("krum")().needs() == DEFENSES.get("multi-krum")().needs() == {Scalar.GRAM}
    assert set(ENCRYPTABLE) == {"dp-fedavg", "dp-noise", "fedavg", "flame", "krum", "multi-krum", "norm-clipping"}
    for name in set(DEFENSES.names()) - set(ENCRYPTABLE):
        assert DEFENSES.get(name)().needs() == {Scalar.ROWS}, name


class _Counting(TensorScalars):
    """Records which scalars were read."""

    def __init__(self, *args: torch.Tensor) -> None:
        super().__init__(*args)
        self.read: list[str] = []

    def gram(self) -> torch.Tensor:
        self.read.append("gram")
        return super().gram()

    def global_products(self) -> torch.Tensor:
        self.read.append("global products")
        return super().global_products()


def test_below_minimum_reads_no_scalar() -> None:
    updates, weights, global_vector = _round(n=4, outliers=0)
    source = _Counting(updates, global_vector)
    with pytest.raises(BelowMinimum, match=r"krum\(f=1\) needs at least 5 accepted updates, got 4"):
        run_scalar_pipeline(build_pipeline([{"name": "krum", "f": 1}]).stages, source, weights, D)
    assert not source.read


def test_flame_between_updates_reads_no_global_product() -> None:
    updates, weights, global_vector = _round()
    source = _Counting(updates, global_vector)
    run_scalar_pipeline([Flame(distance="updates", noise_lambda=0.0)], source, weights, D)
    assert "global products" not in source.read


def test_a_stage_reading_an_undeclared_scalar_is_an_error() -> None:
    class Sloppy(FedAvg):
        def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
            batch.norms(batch.accepted.nonzero().squeeze(1))
            return replace(batch, coefficients=batch.mean_coefficients())

    updates, weights, _ = _round()
    with pytest.raises(RuntimeError, match="squared norms .* needs\\(\\) does not declare"):
        run_scalar_pipeline([Sloppy()], TensorScalars(updates), weights, D)


def test_a_stage_that_needs_the_rows_has_no_scalar_path() -> None:
    updates, weights, _ = _round()
    median = DEFENSES.get("median")()
    assert not median.encryptable and Defense.on_scalars is type(median).on_scalars
    with pytest.raises(NotImplementedError, match="coordinate-wise order statistics"):
        run_scalar_pipeline([median], TensorScalars(updates), weights, D)


def test_the_refusal_names_what_the_rule_needs_and_what_can_run() -> None:
    assert encrypted_defense_problem(0, "flame", "ckks") is None
    assert encrypted_defense_problem(1, "median", "simulated") == (
        "defenses.1.name: 'median' needs coordinate-wise order statistics, which cannot run on CKKS "
        "ciphertexts; with encryption.mode: simulated use dp-fedavg, dp-noise, fedavg, flame, krum, multi-krum, "
        "norm-clipping"
    )
    problem = encrypted_defense_problem(2, "fltrust", "ckks")
    assert problem is not None and problem.startswith("defenses.2.name: 'fltrust' needs ") and "\n" not in problem
