"""Injected faults: the run completes, and every round's record counts what failed."""

from __future__ import annotations

from pathlib import Path

from test_simulation import SMALL, run_small

from fedsec.faults import crashes, delay_s, dropped
from fedsec.results import CLIENTS_FILE, read_jsonl
from fedsec.scenario import FaultsConfig


def test_draws_are_seeded_and_follow_the_probabilities() -> None:
    faults = FaultsConfig(dropout=0.3, crash=0.1, slow=0.2, slow_delay_s=1.5)
    draws = [(r, c) for r in range(1, 51) for c in range(100)]
    drop_rate = sum(dropped(faults, 0, r, c) for r, c in draws) / len(draws)
    crash_rate = sum(crashes(faults, 0, r, c) for r, c in draws) / len(draws)
    delays = {delay_s(faults, 0, r, c) for r, c in draws}
    assert abs(drop_rate - 0.3) < 0.02 and abs(crash_rate - 0.1) < 0.015 and delays == {0.0, 1.5}
    assert [dropped(faults, 0, 3, c) for c in range(100)] == [dropped(faults, 0, 3, c) for c in range(100)]
    assert [dropped(faults, 0, 3, c) for c in range(100)] != [dropped(faults, 1, 3, c) for c in range(100)]
    assert not any(dropped(FaultsConfig(), 0, r, c) or crashes(FaultsConfig(), 0, r, c) for r, c in draws)


def test_dropout_and_crashes_are_counted_and_the_run_completes(tmp_path: Path) -> None:
    faults = FaultsConfig(dropout=0.3, crash=0.1)
    run_dir, summary = run_small(
        tmp_path, rounds=4, seed=3, faults=faults.model_dump(),
        data={**SMALL["data"], "num_clients": 10}, sampling={"clients_per_round": 10},
    )
    rounds = run_dir.rounds()
    assert [r["round"] for r in rounds] == [1, 2, 3, 4] and summary["rounds"] == 4
    clients = read_jsonl(run_dir.file(CLIENTS_FILE))
    for record in rounds:
        n = record["round"]
        lost = {c for c in range(10) if dropped(faults, 3, n, c)}
        crashed = {c for c in range(10) if c not in lost and crashes(faults, 3, n, c)}
        assert record["dropped"] == len(lost) and record["failed"] == len(crashed)
        assert record["replies"] == 10 - len(lost) - len(crashed) and record["missing"] == 0
        failures = {c["client"]: c for c in clients if c["round"] == n and "failure" in c}
        assert {c for c, f in failures.items() if f["failure"] == "dropped"} == lost
        assert {c for c, f in failures.items() if f["failure"] == "error"} == crashed
        assert all("injected crash" in failures[c]["reason"] for c in crashed)
        if record["replies"]:
            assert record["accepted"] == record["replies"] and "ma" in record
    assert summary["dropped"] == sum(r["dropped"] for r in rounds) > 0
    assert summary["failed"] == sum(r["failed"] for r in rounds) > 0
    assert summary["fpr"] is None  # FedAvg never rejects; failures are not defense decisions


def test_slow_clients_past_the_timeout_are_missing_and_too_few_replies_skip_the_round(tmp_path: Path) -> None:
    faults = FaultsConfig(slow=1.0, slow_delay_s=4.0)
    run_dir, summary = run_small(tmp_path, rounds=2, faults=faults.model_dump(), server={"round_timeout_s": 1.5})
    for record in run_dir.rounds():
        assert record["missing"] == 4 and record["replies"] == 0
        assert "fewer than sampling.min_clients" in record["skipped"]
    assert summary["skipped_rounds"] == 2 and summary["missing"] == 8
    assert {c["failure"] for c in read_jsonl(run_dir.file(CLIENTS_FILE))} == {"missing"}
