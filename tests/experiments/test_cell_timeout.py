"""A sweep cell past ``--cell-timeout`` is stopped with every process it started, recorded as
failed with the reason at the end of its log; a cell that ends in time keeps its exit status."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil

from fedsec.experiments.sweep import TIMED_OUT, run_logged

# Starts a grandchild that would outlive it, reports the grandchild's PID, then hangs.
HANGS = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
         "time.sleep(300)']); print(child.pid, flush=True); time.sleep(300)")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_cell_past_its_time_is_stopped_with_its_descendants(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    started = time.monotonic()
    status = run_logged([sys.executable, "-c", HANGS], log, os.environ, timeout_s=3)
    assert status == TIMED_OUT
    assert time.monotonic() - started < 3 + 15  # stopped at the limit, not at the end of the sleep
    lines = log.read_text().splitlines()
    grandchild = int(lines[0])
    assert not alive(grandchild)
    assert lines[-1] == "stopped by fedsec sweep: still running after 3 s (--cell-timeout)"


def test_a_cell_that_ends_in_time_keeps_its_status_and_log(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    status = run_logged([sys.executable, "-c", "print('done'); raise SystemExit(3)"], log, os.environ, timeout_s=60)
    assert status == 3 and log.read_text() == "done\n"
