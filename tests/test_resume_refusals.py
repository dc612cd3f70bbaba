"""`fedsec run --resume` refuses a run directory it cannot continue faithfully: one line per
problem, exit 2, no traceback, nothing run, nothing planted executed."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from traceback import format_exception

import pytest
import torch
from local_grid import LocalGrid
from test_simulation import SMALL
from typer.testing import CliRunner

from fedsec.checkpoint import CHECKPOINT_FILE, Checkpoint, save_checkpoint, scenario_digest
from fedsec.cli import app
from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.key_authority import KEYS_DIR, KeyAuthority
from fedsec.fl.client_app import app as client_app
from fedsec.fl.server import FederationError, FederationServer
from fedsec.results import METRICS_FILE, SCENARIO_FILE, RunDirectory, append_jsonl
from fedsec.scenario import parse_scenario, to_yaml

ROOT = Path(__file__).parents[1]


@dataclass(frozen=True)
class Outcome:
    """Exit code and output of one command."""

    code: int
    stdout: str
    stderr: str


class Planted:
    """A pickle that creates a file when loaded: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def run_dir_with(tmp_path: Path, **changes: object) -> tuple[RunDirectory, str]:
    """A run directory whose scenario.yaml is SMALL (+ changes) and whose round 1 is recorded."""
    scenario = parse_scenario({**SMALL, **changes, "output": {"dir": str(tmp_path), "plots": False}})
    run_dir = RunDirectory.create(tmp_path, scenario.name)
    run_dir.file(SCENARIO_FILE).write_text(to_yaml(scenario))
    append_jsonl(run_dir.file(METRICS_FILE), [{"round": 1}])
    return run_dir, scenario_digest(scenario.model_dump_json())


def checkpoint(digest: str, fingerprint: str | None = None) -> Checkpoint:
    return Checkpoint(1, {"global_vector": torch.zeros(3), "defenses": {}}, {0: 0}, digest, fingerprint)


def resume(run_dir: RunDirectory, isolated: bool = False) -> Outcome:
    """`fedsec run --resume RUN_DIR`, in a process of its own when ``isolated`` (else in this one)."""
    args = ["run", "--resume", str(run_dir.path), "--quiet"]
    if isolated:
        done = subprocess.run([sys.executable, "-m", "fedsec", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        return Outcome(done.returncode, done.stdout, done.stderr)
    result = CliRunner().invoke(app, args)
    traceback = "".join(format_exception(result.exception)) if result.exception and result.exit_code != 2 else ""
    return Outcome(result.exit_code, result.stdout, result.stderr + traceback)


def assert_refused(result: Outcome, *expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "run directory:" not in result.stdout
    assert len(lines) == len(expected), lines
    for line, text in zip(lines, expected, strict=True):
        assert text in line, line


def test_a_planted_pickle_in_the_checkpoint_is_refused_unexecuted(tmp_path: Path) -> None:
    run_dir, _ = run_dir_with(tmp_path)
    marker = tmp_path / "pwned"
    run_dir.file(CHECKPOINT_FILE).write_bytes(pickle.dumps(Planted(marker)))
    assert_refused(resume(run_dir, isolated=True), "not a readable checkpoint")
    assert not marker.exists()
    torch.save({"round": Planted(marker)}, run_dir.file(CHECKPOINT_FILE))  # inside torch's zip format too
    assert_refused(resume(run_dir, isolated=True), "not a readable checkpoint")
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 200])
def test_a_truncated_checkpoint_is_refused(tmp_path: Path, cut: int) -> None:
    run_dir, digest = run_dir_with(tmp_path)
    save_checkpoint(run_dir.file(CHECKPOINT_FILE), checkpoint(digest))
    data = run_dir.file(CHECKPOINT_FILE).read_bytes()
    run_dir.file(CHECKPOINT_FILE).write_bytes(data[:cut])
    assert_refused(resume(run_dir), "not a readable checkpoint")


def test_an_edited_scenario_is_refused(tmp_path: Path) -> None:
    run_dir, digest = run_dir_with(tmp_path)
    save_checkpoint(run_dir.file(CHECKPOINT_FILE), checkpoint(digest))
    edited = run_dir.file(SCENARIO_FILE).read_text().replace("seed: 7", "seed: 8")
    run_dir.file(SCENARIO_FILE).write_text(edited)
    assert_refused(resume(run_dir), "scenario.yaml: changed since the run started")


def test_records_missing_before_the_checkpoint_are_refused(tmp_path: Path) -> None:
    run_dir, digest = run_dir_with(tmp_path)
    save_checkpoint(run_dir.file(CHECKPOINT_FILE), checkpoint(digest))
    run_dir.file(METRICS_FILE).write_text("")
    assert_refused(resume(run_dir), "metrics.jsonl: no record of round(s) [1]")


def test_an_encrypted_run_without_its_keys_is_refused(tmp_path: Path) -> None:
    run_dir, digest = run_dir_with(tmp_path, encryption={"mode": "ckks"})
    params = ckks_parameters(EncryptionConfig(mode="ckks"), Needs(depth=1, rotations=False))
    (tmp_path / "other").mkdir()
    other = KeyAuthority(params, tmp_path / "other", 100)
    save_checkpoint(run_dir.file(CHECKPOINT_FILE), checkpoint(digest, fingerprint="0" * 64))
    assert_refused(resume(run_dir), "keys: missing")
    os.rename(tmp_path / "other" / KEYS_DIR, run_dir.file(KEYS_DIR))
    assert other.fingerprint != "0" * 64
    assert_refused(resume(run_dir), "keys: not the keys the checkpoint's ciphertexts were made with")


def test_the_server_itself_refuses_an_edited_scenario(tmp_path: Path) -> None:
    """The same check in the server (runs started by `flwr run`, sweeps), not only in the CLI."""
    run_dir, digest = run_dir_with(tmp_path)
    save_checkpoint(run_dir.file(CHECKPOINT_FILE), checkpoint(digest))
    edited = parse_scenario({**SMALL, "seed": 8, "output": {"dir": str(tmp_path), "plots": False}})
    with pytest.raises(FederationError, match="changed since the run started"):
        FederationServer(edited, run_dir, LocalGrid(client_app, edited.data.num_clients), False).run()
    assert json.loads(run_dir.file(METRICS_FILE).read_text()) == {"round": 1}  # nothing rewritten


def test_metrics_lines_that_are_not_round_records_are_refused(tmp_path: Path) -> None:
    run_dir, digest = run_dir_with(tmp_path)
    save_checkpoint(run_dir.file(CHECKPOINT_FILE), checkpoint(digest))
    run_dir.file(METRICS_FILE).write_text('{"round": 1}\n[1, 2]\n')
    assert_refused(resume(run_dir), "metrics.jsonl: holds lines that are not round records")
