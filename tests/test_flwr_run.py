"""`flwr run .` through scripts/flwr_run_local.sh: it runs the scenario and stops what it starts."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

from processes import free_port, live_pids_tagged

ROOT = Path(__file__).parents[1]


def test_flwr_run_local_runs_and_leaves_no_process(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    overrides = f"rounds=2;data.dataset=digits;model.name=mlp;data.num_clients=5;sampling.clients_per_round=3;output.dir={tmp_path}"
    result = subprocess.run(
        ["bash", "scripts/flwr_run_local.sh", "scenarios/quickstart.yaml", overrides],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "FEDSEC_TEST_TAG": tag, "FEDSEC_SUPERLINK_PORT": str(free_port())},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["ma"] > 0.2
    deadline = time.time() + 10
    while live_pids_tagged(tag) and time.time() < deadline:
        time.sleep(0.2)
    assert live_pids_tagged(tag) == set()


def test_flwr_run_local_rejects_bad_scenario() -> None:
    result = subprocess.run(
        ["bash", "scripts/flwr_run_local.sh", "scenarios/quickstart.yaml", "rounds=-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "rounds:" in result.stderr and "Traceback" not in result.stderr
