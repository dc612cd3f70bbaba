"""The extraction benchmark still runs (tiny sizes) and prints its comparison against ART."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_bench_extraction_runs_beside_art() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_extraction.py"), "--dataset", "digits",
                             "--budget", "100", "--epochs", "1", "--repeats", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ") and "/ 100 |" in line]
    assert len(lines) == 6 and "ART KnockoffNets" in result.stdout and "ART CopycatCNN" in result.stdout
    assert all(int(line.split("|")[5].split("/")[0]) <= 100 for line in lines)  # queries within the budget
