"""A run attaches to an existing Ray cluster through `resources.ray_address`: a head started on
loopback, the run's driver joins it, its encrypted clients find the key through the job's runtime
environment, nothing listens beyond 127.0.0.1, and the head is gone afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from processes import LOOPBACK, free_port, listening_addresses, live_pids_tagged

from fedsec.fl.environment import ENVIRONMENT

ROOT = Path(__file__).parents[1]
VENV = ROOT / ".venv/bin"


def stop_tagged(tag: str) -> None:
    """Stop every process carrying the tag: TERM, then KILL what is left after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in live_pids_tagged(tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait_s
        while live_pids_tagged(tag) and time.time() < deadline:
            time.sleep(0.2)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_run_attaches_to_a_loopback_ray_head(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    # The project's Ray environment keeps the head's servers on loopback (docs/security.md).
    env = {**os.environ, **ENVIRONMENT, "FEDSEC_TEST_TAG": tag}
    # Ray's socket paths must stay short: its temp dir lives directly under /tmp.
    ray_temp = Path(tempfile.mkdtemp(prefix="fsray", dir="/tmp"))
    port = free_port()
    try:
        started = subprocess.run(
            [str(VENV / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--include-dashboard=false", "--disable-usage-stats", "--num-cpus=1",  # one client actor
             f"--temp-dir={ray_temp}"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        head = live_pids_tagged(tag)
        assert head, "ray start left no head process"

        scenario = tmp_path / "attach.yaml"
        scenario.write_text(yaml.safe_dump({
            "name": "attach", "rounds": 2, "data": {"dataset": "digits", "num_clients": 3},
            "model": {"name": "mlp"}, "resources": {"device": "cpu", "ray_address": f"127.0.0.1:{port}"},
            # Under CKKS the clients must find the secret key: its path reaches the cluster's
            # workers only through the job's runtime environment.
            "encryption": {"mode": "ckks"},
            "output": {"dir": str(tmp_path / "runs"), "plots": False},
        }))
        run = subprocess.Popen([str(VENV / "fedsec"), "run", str(scenario), "--quiet"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen: set[str] = set()
        while run.poll() is None:
            seen |= listening_addresses(live_pids_tagged(tag))
            time.sleep(0.3)
        output = run.stdout.read() if run.stdout else ""
        assert run.returncode == 0, output[-3000:]

        (run_dir,) = (tmp_path / "runs").iterdir()
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["round"] for r in records] == [1, 2] and all(r["replies"] == 3 for r in records)
        # The run's driver joined this head: Ray writes its log into the head's session directory.
        driver_logs = list(ray_temp.glob(f"session_*/logs/python-core-driver-*_{run.pid}.log"))
        assert driver_logs, sorted(p.name for p in ray_temp.glob("session_*/logs/*driver*"))
        assert seen and all(LOOPBACK.match(address) for address in seen), seen
    finally:
        stop_tagged(tag)
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert live_pids_tagged(tag) == set()
