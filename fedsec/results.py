"""The run directory: resolved scenario, per-round JSONL records, summary, model, plots.

Every write is atomic: whole files go through a temporary file and ``os.replace``; JSONL
records are appended with one ``write`` of one complete line, so a crash never leaves a
half-written record and never loses what was already written.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
CLIENTS_FILE = "clients.jsonl"
SUMMARY_FILE = "summary.json"
SCENARIO_FILE = "scenario.yaml"
MODEL_FILE = "model.pt"
PARTITIONS_FILE = "partitions.json"


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    ``mode`` is the file's permission bits (0o600 for owner-only secrets).
    """
    payload = data.encode() if isinstance(data, str) else data
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        os.fchmod(tmp.fileno(), mode)
        tmp.write(payload)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def _clean(value: Any, digits: int | None = 6) -> Any:
    """JSON-safe values: non-finite floats become null, floats keep ``digits`` significant digits
    (None: all of them)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _clean(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, digits) for v in value]
    return value


def append_jsonl(path: Path, records: list[dict[str, Any]], digits: int | None = 6) -> None:
    """Append records, one line each, with a single ``write`` call, then fsync; floats keep
    ``digits`` significant digits (None: full precision, e.g. for audit timestamps)."""
    if not records:
        return
    lines = "".join(json.dumps(_clean(r, digits), separators=(",", ":")) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a JSONL file (a torn last line, if any, is ignored)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class RunDirectory:
    """One run's folder, ``<parent>/<name>-<timestamp>/``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: str | Path, name: str) -> RunDirectory:
        """A new, empty run directory; never reuses an existing one."""
        parent = Path(parent)
        parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for attempt in range(1000):
            suffix = f"-{attempt}" if attempt else ""
            path = parent / f"{name}-{stamp}{suffix}"
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise FileExistsError(f"cannot create a new run directory under {parent}")

    def file(self, name: str) -> Path:
        """Path of a file in the run directory."""
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        """Atomically write a JSON document."""
        write_atomic(self.file(name), json.dumps(_clean(data), indent=2) + "\n")

    def append_round(self, record: dict[str, Any]) -> None:
        """One round's record in metrics.jsonl."""
        append_jsonl(self.file(METRICS_FILE), [record])

    def append_clients(self, records: list[dict[str, Any]]) -> None:
        """Per-client records of one round in clients.jsonl."""
        append_jsonl(self.file(CLIENTS_FILE), records)

    def rounds(self) -> list[dict[str, Any]]:
        """The round records written so far."""
        return read_jsonl(self.file(METRICS_FILE))

    def drop_records_after(self, last_round: int, more_files: Sequence[str] = ()) -> None:
        """Remove records of rounds after ``last_round`` from the JSONL files (the round and
        client records, and ``more_files``: audits' records): a resumed run repeats those rounds.
        Earlier records are rewritten unchanged, atomically."""
        for name in (METRICS_FILE, CLIENTS_FILE, *more_files):
            path = self.file(name)
            kept = [r for r in read_jsonl(path) if r["round"] <= last_round]
            lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept)
            if path.exists():
                write_atomic(path, lines)
