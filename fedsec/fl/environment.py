"""Process environment for Flower and Ray: loopback only, no dashboard, no telemetry."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOOPBACK = "127.0.0.1"

ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


class _QuietFlowerLogs(logging.Filter):
    """Drop Flower's per-run deprecation notice for ``run_simulation`` and shorten a logged
    traceback (a failed client's, or the runtime's when it crashes) to its last line: the server
    records every client failure with its reason in clients.jsonl, and a crashed runtime ends the
    run with a one-line reason, so neither may flood the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "DEPRECATED FEATURE" in message:
            return False
        if record.levelno >= logging.ERROR and "\n" in message:
            lines = [line.strip() for line in message.splitlines() if line.strip()]
            record.msg, record.args = lines[-1], ()
        return True


def configure_environment(quiet: bool = True) -> None:
    """Set the variables above (unless the user set them) and quiet Flower's INFO logs."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if quiet:
        flwr_logger = logging.getLogger("flwr")
        flwr_logger.setLevel(logging.WARNING)
        flwr_logger.addFilter(_QuietFlowerLogs())


def worker_pythonpath() -> str:
    """This process's import path for Ray's workers, as Flower's own start of Ray passes it:
    ``sys.path``, then any ``PYTHONPATH`` already set."""
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*sys.path, *([existing] if existing else [])])


@contextmanager
def scoped_environment(variables: dict[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process (Ray's local workers inherit them) and restore the old values."""
    old = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
