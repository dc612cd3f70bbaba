"""Checkpoint and resume: a run killed with SIGKILL mid-way and resumed ends as if never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from processes import live_pids_tagged
from test_simulation import SMALL, run_small

from fedsec.checkpoint import CHECKPOINT_FILE
from fedsec.results import CLIENTS_FILE, METRICS_FILE, SUMMARY_FILE, RunDirectory, read_jsonl

ROOT = Path(__file__).parents[1]
ROUNDS = 6
DEFENSES = [{"name": "foolsgold"}]  # keeps per-sender history, which must survive the resume
WATERMARK = {"scheme": {"name": "keyed-labels", "triggers": 20}, "key": "seeded", "owner_samples": 200,
             "embedding": {"max_steps": 20}}  # the resumed owner reuses the secrets of the first part


def fedsec(*args: str, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fedsec", *args], cwd=ROOT, start_new_session=True,
        env={**os.environ, "FEDSEC_TEST_TAG": tag}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop_tagged(tag: str) -> None:
    for pid in live_pids_tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    # The uninterrupted reference runs in one process (LocalGrid; test_simulation shows it equals Ray's).
    _, reference = run_small(tmp_path / "reference", ray=False, rounds=ROUNDS, defenses=DEFENSES, watermark=WATERMARK)
    (reference_dir,) = (tmp_path / "reference").iterdir()
    scenario = {**SMALL, "rounds": ROUNDS, "defenses": DEFENSES, "watermark": WATERMARK, "output": {"dir": str(tmp_path / "killed")}}
    file = tmp_path / "scenario.yaml"
    file.write_text(yaml.safe_dump(scenario))
    tag = uuid.uuid4().hex
    try:
        run = fedsec("run", str(file), "--quiet", tag=tag)
        deadline = time.time() + 300
        metrics = None
        while time.time() < deadline and run.poll() is None:
            found = list((tmp_path / "killed").glob(f"*/{METRICS_FILE}"))
            if found and len(read_jsonl(found[0])) >= 2:
                metrics = found[0]
                break
            time.sleep(0.05)
        assert metrics is not None, "the run ended or stalled before round 2"
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        stop_tagged(tag)
        run_dir = RunDirectory(metrics.parent)
        killed_at = len(run_dir.rounds())
        assert killed_at < ROUNDS and not run_dir.file(SUMMARY_FILE).exists()
        assert run_dir.file(CHECKPOINT_FILE).exists()

        secrets = run_dir.file("owner/secrets.pt")
        written = secrets.stat().st_mtime_ns
        resumed = fedsec("run", "--resume", str(run_dir.path), "--quiet", tag=tag)
        output, _ = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, output[-3000:]
    finally:
        stop_tagged(tag)

    assert secrets.stat().st_mtime_ns == written
    expected = RunDirectory(reference_dir).rounds()
    got = run_dir.rounds()
    assert [r["round"] for r in got] == list(range(1, ROUNDS + 1))
    compared = ("ma", "loss", "accepted", "wm_p_value")
    assert [[r[k] for k in compared] for r in got] == [[r[k] for k in compared] for r in expected]
    clients = read_jsonl(run_dir.file(CLIENTS_FILE))
    expected_clients = read_jsonl(reference_dir / CLIENTS_FILE)
    assert [(c["round"], c["client"], c["accepted"]) for c in clients] == [
        (c["round"], c["client"], c["accepted"]) for c in expected_clients
    ]
    summary = json.loads(run_dir.file(SUMMARY_FILE).read_text())
    assert summary["ma"] == json.loads((reference_dir / SUMMARY_FILE).read_text())["ma"]
    assert summary["rounds"] == ROUNDS and reference["rounds"] == ROUNDS
    again = fedsec("run", "--resume", str(run_dir.path), tag=tag)
    assert again.wait(timeout=60) == 0 and "already finished" in again.stdout.read()
