"""Detection rates exist only for pipelines that may reject; skipped rounds and validation
rejections are not defense decisions; the malicious share of a round (docs/metrics.md)."""

from __future__ import annotations

import pytest
import torch

from fedsec.defenses import DefensePipeline, build_pipeline
from fedsec.fl.server import detection_metrics, malicious_share

WEIGHTING_ONLY = ["fedavg", "median", "trimmed-mean", "centered-clipping", "geometric-median", "norm-clipping",
                  "dp-noise", "crfl"]
SCREENING = ["krum", "multi-krum", "bulyan", "flame", "dnc", "signguard", "fltrust", "foolsgold"]


@pytest.mark.parametrize("name", WEIGHTING_ONLY)
def test_rules_that_never_reject_have_no_detection_rates(name: str) -> None:
    pipeline = build_pipeline([{"name": "norm-clipping"}, {"name": name}])
    assert not pipeline.rejects
    metrics = detection_metrics([True, False, False], [True, True, True], pipeline.rejects)
    assert set(metrics) == {"tp", "fp", "fn", "tn", "precision", "recall", "fpr", "f1"}
    assert all(value is None for value in metrics.values())


def test_the_default_pipeline_never_rejects() -> None:
    assert not DefensePipeline([]).rejects


@pytest.mark.parametrize("name", SCREENING)
def test_one_screening_stage_makes_the_pipeline_a_detector(name: str) -> None:
    assert build_pipeline([{"name": "norm-clipping"}, {"name": name}]).rejects


def test_counts_and_rates_of_a_screening_round() -> None:
    attacked = [True, True, False, False, False]
    accepted = [False, True, False, True, True]
    assert detection_metrics(attacked, accepted, rejects=True) == {
        "tp": 1, "fn": 1, "fp": 1, "tn": 2, "precision": 0.5, "recall": 0.5, "fpr": 1 / 3, "f1": 0.5}


def test_a_skipped_round_counts_no_miss() -> None:
    metrics = detection_metrics([True, False], None, rejects=True)
    assert {k: metrics[k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    assert metrics["recall"] is None and metrics["fpr"] is None


def test_malicious_share_sums_the_attackers_contributions() -> None:
    shares = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert malicious_share([True, False, False, True], shares) == pytest.approx(0.5)
    assert malicious_share([False] * 4, shares) is None  # nobody attacked
    assert malicious_share([True, False, False, True], None) is None  # unknown (CKKS without norms)
    assert malicious_share([True, False], torch.zeros(2)) is None  # nothing aggregated
