"""Run directory writes: atomic files, whole JSONL lines, no overwrite of earlier runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fedsec.results import RunDirectory, append_jsonl, read_jsonl, write_atomic


def test_run_directories_never_collide(tmp_path: Path) -> None:
    first = RunDirectory.create(tmp_path, "x")
    second = RunDirectory.create(tmp_path, "x")
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()


def test_jsonl_lines_are_whole_and_non_finite_values_become_null(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append_jsonl(path, [{"round": 1, "ma": 0.5}])
    append_jsonl(path, [{"round": 2, "ma": float("nan")}, {"round": 3, "ma": 0.25}])
    assert read_jsonl(path) == [{"round": 1, "ma": 0.5}, {"round": 2, "ma": None}, {"round": 3, "ma": 0.25}]


def test_torn_last_line_is_ignored_and_earlier_records_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append_jsonl(path, [{"round": 1}])
    with path.open("a") as f:
        f.write('{"round": 2, "ma"')
    assert read_jsonl(path) == [{"round": 1}]


def test_write_atomic_replaces_whole_file_with_mode(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_atomic(path, json.dumps({"a": 1}))
    write_atomic(path, json.dumps({"b": 2}), mode=0o600)
    assert json.loads(path.read_text()) == {"b": 2}
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
