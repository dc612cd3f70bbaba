"""environment.jsonl: one record per start of the server (versions, commit, machine, thread counts),
and resources.server_threads pins the server's torch threads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_simulation import SMALL

from fedsec.fl.server import FederationServer
from fedsec.provenance import ENVIRONMENT_FILE, source_commit
from fedsec.results import RunDirectory, read_jsonl
from fedsec.scenario import parse_scenario
from tests.local_grid import run_locally

ROOT = Path(__file__).parents[1]


class CrashAfterFirstRound(FederationServer):
    def run_round(self, round_number, nodes):  # type: ignore[no-untyped-def]
        if round_number == 2:
            raise RuntimeError("stopped after round 1")
        return super().run_round(round_number, nodes)


def start(tmp_path: Path, resources: dict, server: type[FederationServer] = FederationServer) -> RunDirectory:
    scenario = parse_scenario({**SMALL, "rounds": 2, "resources": resources,
                               "output": {"dir": str(tmp_path), "plots": False, "save_model": False}})
    existing = sorted(tmp_path.iterdir()) if tmp_path.exists() else []
    run_dir = RunDirectory(existing[0]) if existing else RunDirectory.create(tmp_path, scenario.name)
    try:
        run_locally(scenario, run_dir, server)
    except RuntimeError as exc:
        assert "stopped after round 1" in str(exc)
    return run_dir


def test_each_start_is_recorded_with_the_server_threads_it_used(tmp_path: Path) -> None:
    torch.set_num_threads(3)  # this process's own count: what the server keeps unless told otherwise
    pinned = start(tmp_path / "pinned", {"device": "cpu", "server_threads": 1}, CrashAfterFirstRound)
    (first,) = read_jsonl(pinned.file(ENVIRONMENT_FILE))
    assert first["server_threads"] == 1 and first["client_threads"] == 1 and first["resumed_after_round"] == 0
    assert torch.__version__.startswith(first["versions"]["torch"]) and first["versions"]["fedsec"]
    assert first["device"] == "cpu" and first["cpu_count"] >= 1 and first["python"].count(".") == 2

    torch.set_num_threads(3)
    start(tmp_path / "pinned", {"device": "cpu", "server_threads": 1})  # resumes after round 1
    records = read_jsonl(pinned.file(ENVIRONMENT_FILE))
    assert [r["resumed_after_round"] for r in records] == [0, 1] and records[1]["server_threads"] == 1
    assert [r["round"] for r in pinned.rounds()] == [1, 2]

    torch.set_num_threads(3)
    (default,) = read_jsonl(start(tmp_path / "default", {"device": "cpu"}).file(ENVIRONMENT_FILE))
    assert default["server_threads"] == 3


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_the_commit_is_the_checkouts() -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert source_commit() == head.stdout.strip()


@pytest.mark.parametrize("layout", ["loose", "packed", "detached", "none"])
def test_the_commit_is_read_from_every_ref_layout(tmp_path: Path, layout: str) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    git = tmp_path / ".git"
    if layout != "none":
        (git / "refs/heads").mkdir(parents=True)
        (git / "HEAD").write_text(f"{commit}\n" if layout == "detached" else "ref: refs/heads/main\n")
    if layout == "loose":
        (git / "refs/heads/main").write_text(f"{commit}\n")
    if layout == "packed":
        (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{'f' * 40} refs/heads/other\n{commit} refs/heads/main\n")
    assert source_commit(tmp_path / "fedsec") == (None if layout == "none" else commit)
