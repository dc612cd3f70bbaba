"""Chain figures on hand-made cases."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from fedsec.guards.metrics import auc, far, frr, sasr, sda, seconds_per_1000

T, F = True, False


def test_rates_by_hand() -> None:
    rejected_clean = torch.tensor([F, T, F, F])
    assert frr(rejected_clean) == 0.25
    assert far(torch.tensor([T, T, F, T, F])) == pytest.approx(0.4)
    # right, right-but-rejected, wrong, right: 2 of 4 count
    assert sda(torch.tensor([1, 2, 0, 3]), torch.tensor([1, 2, 3, 3]), rejected_clean) == 0.5
    # on target and through, on target but rejected, off target: 1 of 3
    assert sasr(torch.tensor([0, 0, 5]), torch.tensor([0, 0, 0]), torch.tensor([F, T, F])) == pytest.approx(1 / 3)
    assert seconds_per_1000(0.5, 250) == 2.0


def test_auc_by_hand_and_against_sklearn() -> None:
    assert auc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0
    assert auc(torch.tensor([0.1, 0.5]), torch.tensor([0.5, 0.05])) == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    g = torch.Generator().manual_seed(0)
    clean, triggered = torch.randint(0, 20, (200,), generator=g).float(), torch.randint(5, 25, (150,), generator=g).float()
    expected = roc_auc_score([0] * 200 + [1] * 150, torch.cat([clean, triggered]).numpy())
    assert auc(clean, triggered) == pytest.approx(expected)


def test_auc_leaves_out_unseen_inputs() -> None:
    nan = float("nan")
    assert auc(torch.tensor([0.1, nan]), torch.tensor([nan, 0.3])) == 1.0
    assert auc(torch.tensor([nan]), torch.tensor([0.3])) is None
