"""A pre-loaded process that runs ``fedsec`` commands, one forked child per command, so that many
refusals can be checked through the real command line without paying the interpreter's and the
libraries' start-up for each one.

Each child is a separate process, as ``python -m fedsec ARGS`` would be: its own working
directory, environment, stdout and stderr files and exit code; only the imports are inherited.

Commands on stdin, one JSON object per line (``id``, ``args``, ``cwd``, ``env``, ``stdout``,
``stderr``); at end of input the driver runs them, ``WORKERS`` at a time, and answers one line per
command as it ends: ``ID EXIT_CODE``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import fedsec.checkpoint  # noqa: F401  (imported by the commands themselves; loaded once here)
import fedsec.experiments.report  # noqa: F401
import fedsec.fl.simulation  # noqa: F401
import fedsec.preflight  # noqa: F401
from fedsec.cli import main

WORKERS = 2


def child(job: dict) -> int:
    """Run one command in this (forked) process; its exit code."""
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.argv = ["fedsec", *job["args"]]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def run_all(jobs: list[dict]) -> None:
    running: dict[int, str] = {}
    pending = list(reversed(jobs))
    while pending or running:
        while pending and len(running) < WORKERS:
            job = pending.pop()
            pid = os.fork()
            if pid == 0:
                os._exit(child(job))
            running[pid] = job["id"]
        pid, status = os.wait()
        print(running.pop(pid), os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    run_all([json.loads(line) for line in sys.stdin if line.strip()])
