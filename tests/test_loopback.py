"""A simulation listens on loopback only and leaves no process running (docs/security.md)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from processes import LOOPBACK, listening_addresses

ROOT = Path(__file__).parents[1]
def group_pids(pgid: int) -> set[int]:
    listing = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return {int(pid) for pid, stat in (line.split() for line in listing.splitlines()) if not stat.startswith("Z")}


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_simulation_listens_on_loopback_only_and_stops_everything(tmp_path: Path) -> None:
    scenario = tmp_path / "net.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "net", "rounds": 2, "data": {"dataset": "digits", "num_clients": 4},
        "model": {"name": "mlp"}, "resources": {"device": "cpu"}, "output": {"dir": str(tmp_path / "runs")},
    }))
    process = subprocess.Popen([str(ROOT / ".venv/bin/fedsec"), "run", str(scenario), "--quiet"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seen: set[str] = set()
    while process.poll() is None:
        seen |= listening_addresses(group_pids(process.pid))
        time.sleep(0.3)
    assert process.returncode == 0
    assert seen, "no listening socket was observed (Ray must have run)"
    assert all(LOOPBACK.match(address) for address in seen), seen
    deadline = time.time() + 10
    while group_pids(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert group_pids(process.pid) == set()
