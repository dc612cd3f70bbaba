"""The poisoning contract every data attack shares: row choice, copies, labels, ASR masks."""

import pytest
import torch

from fedsec.attacks.data import DATA_ATTACKS, build_data_attack
from fedsec.attacks.data.base import choose_rows


BATCH_ATTACKS = [n for n in DATA_ATTACKS.names() if build_data_attack({"name": n}).surrogate_models() == 0]
"""Attacks that poison batch by batch (the others craft with the model: tests/attacks/test_clean_label.py)."""


def batch(b: int = 20, c: int = 1, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randint(0, 256, (b, c, size, size), generator=g, dtype=torch.uint8)
    return x, torch.arange(b) % 10


def attack(name: str, **params: object):
    return build_data_attack({"name": name, **params})


@pytest.mark.parametrize("name", BATCH_ATTACKS)
def test_fraction_zero_leaves_the_batch_untouched(name: str) -> None:
    x, y = batch()
    out = attack(name, poison_fraction=0.0, **({"noise_fraction": 0.0} if name == "wanet" else {})).poison(
        x, y, torch.Generator().manual_seed(0)
    )
    assert not out.mask.any()
    assert torch.equal(out.x, x) and torch.equal(out.y, y)


@pytest.mark.parametrize("name", BATCH_ATTACKS)
def test_fraction_one_poisons_every_eligible_row(name: str) -> None:
    x, y = batch()
    a = attack(name, poison_fraction=1.0)
    out = a.poison(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(out.mask, a.eligible(y)) and out.mask.any()
    assert torch.equal(out.y[out.mask], a.target_labels(y[out.mask]))
    assert torch.equal(out.y[~out.mask], y[~out.mask])
    assert out.x.dtype == torch.uint8 and out.x.shape == x.shape


@pytest.mark.parametrize("name", BATCH_ATTACKS)
def test_inputs_are_never_mutated_and_results_are_reproducible(name: str) -> None:
    x, y = batch(c=3)
    x0, y0 = x.clone(), y.clone()
    a = attack(name, poison_fraction=0.5)
    first = a.poison(x, y, torch.Generator().manual_seed(7))
    second = a.poison(x, y, torch.Generator().manual_seed(7))
    triggered = a.apply_test_trigger(x)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert all(torch.equal(u, v) for u, v in zip(first, second, strict=True))
    assert triggered.dtype == torch.uint8 and triggered.data_ptr() != x.data_ptr()


def test_choose_rows_draws_the_expected_count_among_eligible_rows() -> None:
    eligible = torch.tensor([True, False] * 10)
    g = torch.Generator().manual_seed(0)
    counts = [int(choose_rows(eligible, 0.25, g).sum()) for _ in range(400)]
    assert set(counts) == {2, 3}  # 0.25 × 10 = 2.5, rounded stochastically
    assert sum(counts) / len(counts) == pytest.approx(2.5, abs=0.15)
    assert not (choose_rows(eligible, 1.0, g) & ~eligible).any()


def test_dirty_label_target_modes() -> None:
    y = torch.tensor([0, 3, 9])
    one = attack("badnets", target_label=3)
    many = attack("badnets", target_mode="all-to-all")
    assert one.target_labels(y).tolist() == [3, 3, 3]
    assert one.asr_mask(y).tolist() == [True, False, True]
    assert many.target_labels(y).tolist() == [1, 4, 0]
    assert many.asr_mask(y).all()


def test_rejects_images_that_are_not_uint8_batches() -> None:
    with pytest.raises(ValueError, match="uint8"):
        attack("badnets").apply_test_trigger(torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match="uint8"):
        attack("badnets").poison(torch.zeros(1, 6, 6, dtype=torch.uint8), torch.zeros(1), torch.Generator())
