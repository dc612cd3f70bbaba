"""SIGKILL at many points of a run (>= 20, several exactly between a round's records and its
checkpoint), resumed each time: the final records equal those of an uninterrupted run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_simulation import SMALL

from fedsec.results import CLIENTS_FILE, SCENARIO_FILE, SUMMARY_FILE, RunDirectory, read_jsonl
from fedsec.scenario import parse_scenario, to_yaml

DRIVER = Path(__file__).parent / "kill_driver.py"
ROUNDS = 5
KILLS = 24
SCENARIO = {
    **SMALL, "rounds": ROUNDS, "defenses": [{"name": "foolsgold"}],  # per-sender history must survive
    "watermark": {"scheme": {"name": "keyed-labels", "triggers": 20}, "key": "seeded", "owner_samples": 200,
                  "embedding": {"max_steps": 10}},
}
ROUND_FIELDS = ("round", "replies", "accepted", "ma", "loss", "tp", "fp", "fn", "tn", "wm_p_value", "wm_steps")
CLIENT_FIELDS = ("round", "client", "accepted", "scores", "num_examples", "train_loss")


class Driver:
    """tests/kill_driver.py: one pre-loaded process, a forked child per attempt."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(DRIVER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def attempt(self, run_dir: RunDirectory, when: str) -> int:
        """The child's exit status (-9: killed) of one run or resume of ``run_dir``."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{run_dir.path} {when}\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def new_run(root: Path) -> RunDirectory:
    scenario = parse_scenario({**SCENARIO, "output": {"dir": str(root), "plots": False}})
    run_dir = RunDirectory.create(root, scenario.name)
    run_dir.file(SCENARIO_FILE).write_text(to_yaml(scenario))
    return run_dir


def test_runs_killed_anywhere_resume_to_the_uninterrupted_records(tmp_path: Path) -> None:
    driver = Driver()
    try:
        reference = new_run(tmp_path / "reference")
        assert driver.attempt(reference, "inline") == 0
        uninterrupted = new_run(tmp_path / "uninterrupted")  # a forked run without kills: its duration
        started = time.perf_counter()
        assert driver.attempt(uninterrupted, "-1") == 0
        duration = time.perf_counter() - started
        assert_same_records(uninterrupted, reference)
        rng = random.Random(0)
        kills = between = 0
        while kills < KILLS:  # one killed run after another until enough kills were made
            killed = new_run(tmp_path / f"killed-{kills}")
            while kills < KILLS and not killed.file(SUMMARY_FILE).exists():
                # every 4th: exactly between a round's metrics/clients lines and its checkpoint; else
                # anywhere: discovery, training, records, checkpoint, summary, model
                exact = kills % 4 == 0
                status = driver.attempt(killed, "checkpoint" if exact else f"{rng.uniform(0.0, duration):.3f}")
                assert status in (0, -signal.SIGKILL)
                kills += status == -signal.SIGKILL
                between += exact and status == -signal.SIGKILL
                recorded = [r["round"] for r in killed.rounds()]
                assert recorded == list(range(1, len(recorded) + 1))  # never a round twice, never a gap
            assert driver.attempt(killed, "-1") == 0
            assert_same_records(killed, reference)
        assert between >= KILLS // 4
    finally:
        driver.close()


def assert_same_records(killed: RunDirectory, reference: RunDirectory) -> None:
    expected, got = reference.rounds(), killed.rounds()
    assert [r["round"] for r in got] == list(range(1, ROUNDS + 1))
    assert [[r.get(k) for k in ROUND_FIELDS] for r in got] == [[r.get(k) for k in ROUND_FIELDS] for r in expected]
    clients = [[c.get(k) for k in CLIENT_FIELDS] for c in read_jsonl(killed.file(CLIENTS_FILE))]
    assert clients == [[c.get(k) for k in CLIENT_FIELDS] for c in read_jsonl(reference.file(CLIENTS_FILE))]
    summary, reference_summary = (json.loads(r.file(SUMMARY_FILE).read_text()) for r in (killed, reference))
    assert {k: summary[k] for k in ("rounds", "ma", "best_ma", "recall", "fpr", "rejected")} == {
        k: reference_summary[k] for k in ("rounds", "ma", "best_ma", "recall", "fpr", "rejected")}
