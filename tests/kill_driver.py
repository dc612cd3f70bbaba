"""A pre-loaded process that runs (or resumes) run directories with the real server over a
LocalGrid, one forked child per attempt, and kills the child on request: the kill-and-resume
test makes many attempts without paying the interpreter's start-up each time.

Commands on stdin, one per line, answered with one line on stdout (the child's exit status,
negative for a signal):
    RUN_DIR DELAY_S     run; SIGKILL the child after DELAY_S seconds if it is still running
                        (a negative DELAY_S never kills)
    RUN_DIR checkpoint  run; the child SIGKILLs itself when it is about to save its first
                        checkpoint, i.e. after a round's records and before its checkpoint
    RUN_DIR inline      run in this process (no fork): warms the caches the children inherit
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from local_grid import LocalGrid  # noqa: E402

from fedsec.fl import server as server_module  # noqa: E402
from fedsec.fl.client_app import app  # noqa: E402
from fedsec.results import SCENARIO_FILE, RunDirectory  # noqa: E402
from fedsec.scenario import load_scenario  # noqa: E402


def run(run_dir: RunDirectory, die_at_checkpoint: bool) -> None:
    if die_at_checkpoint:
        server_module.save_checkpoint = lambda path, checkpoint: os.kill(os.getpid(), signal.SIGKILL)
    scenario = load_scenario(run_dir.file(SCENARIO_FILE))
    server_module.FederationServer(scenario, run_dir, LocalGrid(app, scenario.data.num_clients), False).run()


def attempt(run_dir: RunDirectory, when: str) -> int:
    if when == "inline":
        run(run_dir, die_at_checkpoint=False)
        return 0
    child = os.fork()
    if child == 0:
        code = 0
        try:
            run(run_dir, when == "checkpoint")
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    delay = -1.0 if when == "checkpoint" else float(when)
    deadline = time.monotonic() + delay
    while delay < 0 or time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(child, signal.SIGKILL)  # not reaped yet: the pid is still this child's
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


def main() -> None:
    for line in sys.stdin:
        path, when = line.split()
        print(attempt(RunDirectory(Path(path)), when), flush=True)


if __name__ == "__main__":
    main()
