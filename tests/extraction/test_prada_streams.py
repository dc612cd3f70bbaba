"""PRADA read once per stream for many δ, the benign streams and the thieves' holdout split, and
scripts/prada_study.py on a tiny digits victim."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch

from fedsec.data.datasets import load_dataset
from fedsec.extraction import PradaParams, queries_until_detection
from fedsec.extraction.audit import holdout_split
from fedsec.extraction.prada import benign_orders, first_alarm, stream_statistics
from fedsec.training import to_input

ROOT = Path(__file__).parents[2]
DELTAS = (0.5, 0.8, 0.85, 0.9, 0.95, 0.99)


def mixed_stream(length: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits images with their labels as the victim's classes (PRADA reads only images and classes),
    then small steps from them (as augmentation queries are): W falls as near-zero distances pile up."""
    digits = load_dataset("digits")
    index = torch.randperm(len(digits.train_y), generator=torch.Generator().manual_seed(3))[:length // 2]
    natural = to_input(digits.train_x[index], torch.device("cpu"))
    steps = (natural + 0.01 * torch.randn(natural.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    return torch.cat([natural, steps]).flatten(1), torch.cat([digits.train_y[index]] * 2)


def test_first_alarm_equals_the_detector_stopped_at_each_delta() -> None:
    params = PradaParams(delta=0.5)
    x, classes = mixed_stream()
    detector = stream_statistics(params, x, classes)
    found = []
    for delta in DELTAS:
        expected = queries_until_detection(params.model_copy(update={"delta": delta}), x, classes)
        assert first_alarm(detector, delta) == expected
        found.append(expected)
    assert None in found and any(f is not None for f in found)  # both outcomes were compared
    detected = [f for f in found if f is not None]
    assert detected == sorted(detected, reverse=True)  # a larger δ never alarms later


def test_tests_follow_the_queries_they_are_made_after() -> None:
    x, classes = mixed_stream(300)
    for every in (1, 7):
        detector = stream_statistics(PradaParams(test_every=every), x, classes)
        assert len(detector.tested) == len(detector.statistics) > 5
        assert all(q % every == 0 for q in detector.tested)
        assert detector.tested == sorted(set(detector.tested)) and detector.tested[-1] <= len(x)


def test_benign_orders_start_in_test_set_order_then_reproducible_shuffles() -> None:
    def draw(seed: int) -> list[torch.Tensor]:
        return benign_orders(50, 4, 30, torch.Generator().manual_seed(seed))

    orders = draw(0)
    assert len(orders) == 4 and all(len(o) == 30 for o in orders)
    assert torch.equal(orders[0], torch.arange(30))
    assert all(len(set(o.tolist())) == 30 and int(o.max()) < 50 for o in orders)
    assert len({tuple(o.tolist()) for o in orders}) == 4
    assert all(torch.equal(a, b) for a, b in zip(orders, draw(0), strict=True))
    assert not torch.equal(orders[1], draw(1)[1])


def test_holdout_split_is_a_seeded_partition() -> None:
    held, scoring = holdout_split(100, 40, seed=0)
    assert len(held) == 40 and len(scoring) == 60
    assert sorted(held.tolist() + scoring.tolist()) == list(range(100))
    assert torch.equal(scoring, scoring.sort().values)
    again, _ = holdout_split(100, 40, seed=0)
    other, _ = holdout_split(100, 40, seed=1)
    assert torch.equal(held, again) and not torch.equal(held, other)


def test_prada_study_prints_one_row_per_delta(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [
        "prada_study.py", "--dataset", "digits", "--holdout", "150", "--train-samples", "300", "--epochs", "1",
        "--budget", "120", "--streams", "3", "--deltas", "0.5,0.99"])
    runpy.run_path(str(ROOT / "scripts" / "prada_study.py"), run_name="__main__")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 0.")]
    assert [row.split("|")[1].strip() for row in rows] == ["0.5", "0.99"]
    assert all(len(row.split("|")) == 9 for row in rows)  # δ, 3 benign columns, 3 attacks
    assert " of 3 (" in rows[0]
    queries = [int(line.split(": ")[1].split(" queries")[0]) for line in out.splitlines()
               if "queries, copy accuracy" in line]
    assert len(queries) == 3 and all(q <= 120 for q in queries)  # every attack within the budget
