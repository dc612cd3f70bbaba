"""Hostile and careless inputs through the real command line, one process per command: each is
refused with exit code 2 and one line per problem on stderr, naming the field or the file, without
a traceback, without writing anything, and a planted pickle never runs.

Scenario files (the corpus in tests/scenarios_bad, plus files too large or too binary to keep there)
go through one ``python -m fedsec validate`` call, which reports every file on lines of its own;
every other case is a command of its own, a process forked from a pre-loaded driver
(tests/command_driver.py), two at a time. A new case is one entry in GENERATED_SCENARIOS or COMMANDS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from test_scenario import expected_message

from fedsec.data.datasets import load_dataset
from fedsec.results import write_atomic
from fedsec.scenario import (
    MAX_FILE_BYTES,
    MAX_PROBLEMS,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_scenario,
    to_yaml,
)
from fedsec.watermark.owner import WatermarkOwner, template_model

BAD = Path(__file__).parent / "scenarios_bad"
TIMEOUT_S = 300  # one command, on a loaded 2-core machine; a refusal takes a few seconds
DRIVER = Path(__file__).parent / "command_driver.py"
MARKER = "planted-code-ran"  # the file a planted pickle creates when it is unpickled
GPU = torch.cuda.is_available()


@dataclass(frozen=True)
class Outcome:
    """What one ``fedsec`` process did: exit code, output, and the paths it changed under its folder."""

    code: int
    stdout: str
    stderr: str
    changed: set[str]

    @property
    def lines(self) -> list[str]:
        """The non-empty lines on stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size (bytes) and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def prepare(folder: Path) -> tuple[Path, dict[str, str]]:
    """Empty working directory and HOME under ``folder``: the directory and the environment."""
    work, home = folder / "work", folder / "home"
    work.mkdir()
    home.mkdir()
    return work, {**os.environ, "HOME": str(home), "FEDSEC_CACHE": str(home / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}


def changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def fedsec(folder: Path, args: list[str]) -> Outcome:
    """``python -m fedsec ARGS`` with its working directory and HOME in empty folders under ``folder``;
    ``changed`` lists what it created, changed or removed anywhere under ``folder``."""
    work, env = prepare(folder)
    before = tree(folder)
    done = subprocess.run([sys.executable, "-m", "fedsec", *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    return Outcome(done.returncode, done.stdout, done.stderr, changes(before, tree(folder)))


def fedsec_forked(jobs: list[tuple[str, Path, list[str]]], output: Path) -> dict[str, Outcome]:
    """Each job (id, folder, args) as :func:`fedsec` does it, in processes forked from one
    pre-loaded driver; stdout and stderr go to files under ``output`` (outside the folders)."""
    requests, befores = [], {}
    for job_id, folder, args in jobs:
        work, env = prepare(folder)
        befores[job_id] = tree(folder)
        requests.append({"id": job_id, "args": args, "cwd": str(work), "env": env,
                         "stdout": str(output / f"{job_id}.out"), "stderr": str(output / f"{job_id}.err")})
    done = subprocess.run([sys.executable, str(DRIVER)], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=TIMEOUT_S * 2, check=True)
    codes = dict(line.split() for line in done.stdout.splitlines())
    return {job_id: Outcome(int(codes[job_id]), (output / f"{job_id}.out").read_text(),
                            (output / f"{job_id}.err").read_text(), changes(befores[job_id], tree(folder)))
            for job_id, folder, _ in jobs}


def write(path: Path, content: str | bytes) -> Path:
    """``content`` in a new file at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


# -- scenario files ------------------------------------------------------------------------------

GENERATED_SCENARIOS: dict[str, tuple[bytes, str]] = {  # name -> (content, text its line contains)
    "larger-than-a-mebibyte.yaml": (b"name: bad\n" + b"# padding\n" * (MAX_FILE_BYTES // 10),
                                    f"larger than {MAX_FILE_BYTES:,} bytes"),
    "binary.yaml": (b"name: bad\n\x00\xff\xfe\x01", "cannot read YAML"),
    "not-utf8.yaml": (b"name: caf\xe9\n", "cannot read YAML"),
}
CORPUS = sorted(p.name for p in BAD.glob("*.yaml"))


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Outcome]:
    """Every hostile scenario file checked by one ``fedsec validate``: its folder and outcome."""
    folder = tmp_path_factory.mktemp("scenarios")
    shutil.copytree(BAD, folder / "in")
    for name, (content, _) in GENERATED_SCENARIOS.items():
        write(folder / "in" / name, content)
    names = [*CORPUS, *GENERATED_SCENARIOS]
    return folder, fedsec(folder, ["validate", *(str(folder / "in" / name) for name in names)])


def test_validate_refuses_every_hostile_file_without_side_effects(validated: tuple[Path, Outcome]) -> None:
    _, outcome = validated
    assert outcome.code == 2
    assert outcome.stdout == ""  # no file was accepted
    assert "Traceback" not in outcome.stderr
    assert not outcome.changed
    assert len(outcome.lines) == len(CORPUS) + len(GENERATED_SCENARIOS), outcome.lines


@pytest.mark.parametrize("name", [*CORPUS, *GENERATED_SCENARIOS])
def test_hostile_scenario_file_gives_one_line_naming_the_problem(validated: tuple[Path, Outcome], name: str) -> None:
    folder, outcome = validated
    path = folder / "in" / name
    expected = GENERATED_SCENARIOS[name][1] if name in GENERATED_SCENARIOS else expected_message(BAD / name)
    lines = [line for line in outcome.lines if line.startswith(f"{path}:")]
    assert len(lines) == 1, lines
    assert expected in lines[0]


# -- other commands ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A command given hostile input. ``make(inputs, run)`` writes the input under the empty folder
    ``inputs`` (``run``: a small watermarked run directory to copy) and returns fedsec's arguments;
    ``expect`` holds one text per stderr line, in order, each contained in its line."""

    id: str
    make: Callable[[Path, Path], list[str]]
    expect: tuple[str, ...]
    skip: str | None = None


class Planted:
    """Unpickling this calls ``open(path, "w")``: the file appears if a loader ran the pickle's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def planted(path: Path) -> Path:
    """A model file (a zip archive, as torch.save writes) whose state dict is a :class:`Planted`
    pickle that would create MARKER in ``path``'s grandparent (the case's folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": "mlp", "dataset": "digits", "state_dict": Planted(path.parents[1] / MARKER)}, path)
    return path


def scenario_file(inputs: Path, **changes: object) -> Path:
    """A small digits scenario with ``changes``; its run directories would go to ./runs."""
    scenario = {"name": "hostile", "rounds": 1, "data": {"dataset": "digits", "num_clients": 4},
                "model": {"name": "mlp"}, "output": {"dir": "runs"}, **changes}
    return write(inputs / "scenario.yaml", yaml.safe_dump(scenario))


def directory(folder: Path, files: dict[str, str | bytes]) -> Path:
    """``folder`` holding ``files`` (relative path -> content)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write(folder / name, content)
    return folder


def run_copy(inputs: Path, run: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A copy of the watermarked run directory with ``files`` (relative path -> content) replaced."""
    shutil.copytree(run, inputs / "run")
    return directory(inputs / "run", files or {})


SUMMARY = '{"rounds": 2, "ma": 0.5}'
ROUND = '{"round": 1, "ma": 0.5}\n'


def sweep(inputs: Path, grid: str, csv: str) -> Path:
    """A sweep directory: sweep.yaml with this grid (YAML text), and sweep.csv."""
    return directory(inputs / "sweep", {"sweep.yaml": f"name: s\nbase: b.yaml\ngrid: {grid}\n", "sweep.csv": csv})


COMMANDS = [
    Case("set-overrides",
         lambda i, r: ["resolve", str(scenario_file(i)), "--set", "rounds=true", "--set", "data.num_clients=1e9"],
         ("rounds: input should be a valid integer (got True)",
          "data.num_clients: input should be a valid integer (got 1000000000.0)")),
    Case("run-more-than-the-data-holds",
         lambda i, r: ["run", str(scenario_file(
             i, data={"dataset": "digits", "num_clients": 5000, "test_samples": 400,
                      "partitioner": {"name": "pathological", "classes_per_client": 12}},
             root_data={"samples": 2000}, watermark={"scheme": {"name": "noise-patterns"}, "owner_samples": 1500}))],
         ("data.num_clients: 5000 clients need 5000 training examples, digits has 1437",
          "data.partitioner.classes_per_client: 12 is more than the 10 classes of digits",
          "data.test_samples: 400 is more than the 360 test examples of digits",
          "root_data.samples: 2000 is more than the 1437 training examples of digits",
          "watermark.owner_samples: 1500 is more than the 1437 training examples of digits")),
    Case("run-dirichlet-clients-below-min-size",
         lambda i, r: ["run", str(scenario_file(i, data={"dataset": "digits", "num_clients": 200}))],
         ("data.num_clients: 200 clients of at least 10 examples each (data.partitioner.min_partition_size)",)),
    Case("run-dba-pattern-wider-than-the-images",
         lambda i, r: ["run", str(scenario_file(i, attack={"ids": [0], "data": {"name": "dba"}}))],
         ("attack.data.offset: the DBA pattern does not fit a 8x8 image",)),
    Case("run-gpu-without-gpu",
         lambda i, r: ["run", str(scenario_file(i, resources={"device": "cuda", "client_gpus": 0.5}))],
         ("resources.device: cuda, but this machine has no CUDA GPU", "resources.client_gpus: 0.5 GPU per client"),
         skip="this machine has a GPU" if GPU else None),
    Case("run-ray-address-nobody-answers",  # ray.init would retry this address for ever
         lambda i, r: ["run", str(scenario_file(i, resources={"ray_address": "127.0.0.1:1"}))],
         ("resources.ray_address: no Ray cluster answers at 127.0.0.1:1",)),
    Case("run-ray-address-off-loopback",  # refused before any connection: the address is never contacted
         lambda i, r: ["run", str(scenario_file(i, resources={"ray_address": "10.0.0.1:6379"}))],
         ("resources.ray_address: 10.0.0.1 is not a loopback address",)),
    Case("report-garbage-summary",
         lambda i, r: ["report", str(directory(i / "run", {"summary.json": '{"ma": 0.5', "metrics.jsonl": ROUND}))],
         ("summary.json: not valid JSON",)),
    Case("report-record-not-an-object",
         lambda i, r: ["report", str(directory(i / "run", {"metrics.jsonl": ROUND + "[1, 2]\n"}))],
         ("metrics.jsonl: record 2: not a JSON object",)),
    Case("report-counter-not-a-number",
         lambda i, r: ["report", str(directory(i / "run", {"metrics.jsonl": '{"round": 1, "train_s": "slow"}\n'}))],
         ("metrics.jsonl: record 1: train_s is not a number",)),
    Case("report-file-not-a-directory", lambda i, r: ["report", str(write(i / "run", ROUND))],
         ("run: neither a sweep directory (sweep.yaml) nor a run directory (metrics.jsonl)",)),
    Case("report-missing-files", lambda i, r: ["report", str(directory(i / "run", {"scenario.yaml": "name: x\n"}))],
         ("run: neither a sweep directory (sweep.yaml) nor a run directory (metrics.jsonl)",)),
    Case("report-sweep-grid-not-a-mapping",
         lambda i, r: ["report", str(sweep(i, "[1, 2]", "a,status,run\n"))],
         ("sweep.yaml: grid: expected a mapping of keys",)),
    Case("summary-not-an-object", lambda i, r: ["summary", str(directory(i / "run", {"summary.json": "[1, 2]"}))],
         ("summary.json: not a JSON object",)),
    Case("summary-truncated-metrics",
         lambda i, r: ["summary", "--at-round", "2",
                       str(directory(i / "run", {"summary.json": SUMMARY,
                                                 "metrics.jsonl": ROUND + '{"round": 2, "m'}))],
         ("run: no record of round 2",)),
    Case("game-file-not-a-directory",
         lambda i, r: ["game", str(write(i / "sweep", "x")), "--attacker", "a", "--defender", "b"],
         ("sweep: no sweep.yaml (not a sweep directory",)),
    Case("game-metric-not-a-number",
         lambda i, r: ["game", str(sweep(i, "{a: {x: 1}, b: {y: 2}}",
                                         "a,b,seed,status,ma,asr,run\nx,y,0,finished,0.9,high,c\n")),
                       "--attacker", "a", "--defender", "b"],
         ("sweep.csv: line 2: asr is not a number",)),
    Case("verify-empty-model",
         lambda i, r: ["verify", "--run", str(run_copy(i, r)), "--model", str(write(i / "m.pt", b""))],
         ("m.pt: empty, truncated, or not a weights-only PyTorch file",)),
    Case("verify-garbage-model",
         lambda i, r: ["verify", "--run", str(run_copy(i, r)), "--model", str(write(i / "m.pt", b"not a model"))],
         ("m.pt: empty, truncated, or not a weights-only PyTorch file",)),
    Case("verify-truncated-model",
         lambda i, r: ["verify", "--run", str(run_copy(i, r)),
                       "--model", str(write(i / "m.pt", (r / "model.pt").read_bytes()[:1000]))],
         ("m.pt: not a model file of this run",)),
    Case("verify-planted-pickle",
         lambda i, r: ["verify", "--run", str(run_copy(i, r)), "--model", str(planted(i / "m.pt"))],
         ("m.pt: empty, truncated, or not a weights-only PyTorch file (nothing in it was run)",)),
    Case("verify-planted-secrets",
         lambda i, r: ["verify", "--run", str(run_copy(i, r, {"owner/secrets.pt": planted(i / "s.pt").read_bytes()}))],
         ("owner/secrets.pt: empty, truncated, or not a weights-only PyTorch file (nothing in it was run)",)),
    Case("verify-not-a-run", lambda i, r: ["verify", "--run", str(directory(i / "run", {"summary.json": SUMMARY}))],
         ("run/scenario.yaml: no such file",)),
    Case("trace-planted-pickle",
         lambda i, r: ["trace", "--run", str(run_copy(i, r)), "--model", str(planted(i / "m.pt"))],
         ("m.pt: empty, truncated, or not a weights-only PyTorch file (nothing in it was run)",)),
    Case("trace-without-fingerprints", lambda i, r: ["trace", "--run", str(run_copy(i, r))],
         ("the scenario has no watermark.fingerprints section",)),
    Case("extract-planted-pickle",
         lambda i, r: ["extract", "--run", str(run_copy(i, r)), "--attack", "knockoff", "--holdout", "100",
                       "--model", str(planted(i / "m.pt"))],
         ("m.pt: empty, truncated, or not a weights-only PyTorch file (nothing in it was run)",)),
    Case("extract-planted-secrets",
         lambda i, r: ["extract", "--run", str(run_copy(i, r, {"owner/secrets.pt": planted(i / "s.pt").read_bytes()})),
                       "--attack", "knockoff", "--holdout", "100"],
         ("owner/secrets.pt: empty, truncated, or not a weights-only PyTorch file (nothing in it was run)",)),
    Case("attack-watermark-planted-pickle",
         lambda i, r: ["attack-watermark", "--run", str(run_copy(i, r)), "--attack", "prune",
                       "--model", str(planted(i / "m.pt"))],
         ("m.pt: empty, truncated, or not a weights-only PyTorch file (nothing in it was run)",)),
    Case("attack-watermark-bad-strength",
         lambda i, r: ["attack-watermark", "--run", str(run_copy(i, r)), "--attack", "prune",
                       "--strength", "0.1,[[[[[[[[[[[[]]]]]]]]]]]]"],
         ("--attack prune: rate: input should be a valid number",)),
]


@pytest.fixture(scope="module")
def watermarked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as a finished watermarked run leaves it (scenario, owner secrets, model), built
    without a federation: digits, an MLP, 20 noise-pattern triggers."""
    run = tmp_path_factory.mktemp("watermarked") / "run"
    scenario = parse_scenario({"name": "wm", "rounds": 1, "data": {"dataset": "digits", "num_clients": 4},
                               "model": {"name": "mlp"}, "watermark": {
                                   "scheme": {"name": "noise-patterns", "triggers": 20}, "key": "seeded",
                                   "owner_samples": 100}})
    run.mkdir()
    write_atomic(run / "scenario.yaml", to_yaml(scenario))
    dataset = load_dataset("digits")
    WatermarkOwner(scenario.watermark, scenario, dataset, torch.device("cpu"), run / "owner")
    model = template_model(scenario, dataset)
    torch.save({"model": "mlp", "dataset": "digits", "state_dict": model.state_dict()}, run / "model.pt")
    return run


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, watermarked_run: Path) -> dict[str, tuple[Path, Outcome]]:
    """Every command case that is not skipped: case id -> (its folder, outcome)."""
    jobs = []
    for case in COMMANDS:
        if case.skip is None:
            folder = tmp_path_factory.mktemp(case.id)
            jobs.append((case.id, folder, case.make(folder / "in", watermarked_run)))
    done = fedsec_forked(jobs, tmp_path_factory.mktemp("outputs"))
    return {job_id: (folder, done[job_id]) for job_id, folder, _ in jobs}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.skipif(c.skip is not None,
                                                                                    reason=c.skip or ""))
                                  for c in COMMANDS])
def test_command_refuses_hostile_input(outcomes: dict[str, tuple[Path, Outcome]], case: Case) -> None:
    folder, outcome = outcomes[case.id]
    assert outcome.code == 2, outcome
    assert len(outcome.lines) == len(case.expect), outcome.lines
    for expected, line in zip(case.expect, outcome.lines, strict=True):
        assert expected in line, line
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert outcome.stdout == ""  # refused before doing anything
    assert not outcome.changed  # no run directory, no report, no cache: nothing written
    assert not (folder / MARKER).exists()


def test_the_planted_pickle_runs_its_code_when_loaded_unsafely(tmp_path: Path) -> None:
    """The pickle cases above prove something only because this payload is live."""
    path = planted(tmp_path / "in" / "m.pt")
    torch.load(path, weights_only=False)["state_dict"].close()
    assert (tmp_path / MARKER).exists()


# -- what strictness keeps working ---------------------------------------------------------------

def test_overrides_are_still_yaml_scalars() -> None:
    scenario = parse_scenario(apply_overrides({"name": "x"}, [
        "encryption.mode=off", "client.lr=1e-3", "output.plots=false", "rounds=3", "server.lr=1",
        "encryption.coeff_mod_bit_sizes=[60, 40, 60]"]))
    assert scenario.encryption.mode == "off" and scenario.client.lr == 0.001 and scenario.output.plots is False
    assert scenario.rounds == 3 and scenario.server.lr == 1.0  # an integer is a float
    assert scenario.encryption.coeff_mod_bit_sizes == [60, 40, 60]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "name: x\nclient: {<<: {lr: 0.1, momentum: 0.5}, lr: 0.2}\n")
    client = load_scenario(path).client
    assert (client.lr, client.momentum) == (0.2, 0.5)


def test_a_string_that_reads_as_a_number_survives_the_round_trip(tmp_path: Path) -> None:
    scenario = parse_scenario({"name": "1e3", "data": {"root": "2e5"}})
    path = write(tmp_path / "resolved.yaml", to_yaml(scenario))
    assert load_scenario(path) == scenario


def test_problem_lines_are_capped() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"name": "x", **{f"key{i}": 0 for i in range(MAX_PROBLEMS + 10)}})
    assert len(info.value.lines) == MAX_PROBLEMS + 1
    assert info.value.lines[-1] == "... and 10 more problems"
