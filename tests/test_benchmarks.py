"""The benchmark scripts still run (with tiny sizes) and print their comparison against the reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(("script", "args", "expected"), [
    ("bench_he.py", ["--repeats", "1", "--clients", "2"], "client encryption (1 update)"),
    ("bench_defenses.py", ["--n", "12", "--d", "2000", "--repeats", "1", "--f", "2"], "krum"),
    ("bench_watermark.py", ["--dataset", "digits", "--steps", "2", "--repeats", "1"], "ratio"),
    ("bench_evaluation.py", ["--dataset", "digits", "--images", "300", "--batch-size", "100", "--repeats", "1"],
     "ratio defaults / fedsec"),
], ids=["he", "defenses", "watermark", "evaluation"])
def test_benchmark_runs(script: str, args: list[str], expected: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected.lower() in result.stdout.lower(), result.stdout[-2000:]


def test_batched_clients_agree_with_one_at_a_time() -> None:
    """The vectorised clients' final parameters equal the sequential clients' up to float round-off."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_batched_clients.py"), "--clients", "3",
                             "--steps", "3", "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    difference = float(result.stdout.rsplit("largest parameter difference", 1)[1])
    assert difference < 1e-5, result.stdout[-2000:]
