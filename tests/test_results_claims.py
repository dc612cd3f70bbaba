"""The published reference matrix, extraction and clean-label tables are what their committed cells
give, and the prose quoting them agrees."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
MATRIX = ROOT / "results" / "matrix"
EXTRACTION = [ROOT / "results" / name for name in ("extraction-keyed", "extraction-schemes", "extraction-ewe",
                                                   "extraction-ewe-late", "extraction-ewe-kappa")]
CLEAN_LABEL = ROOT / "results" / "clean-label"


def marked_block(page: Path, name: str = "matrix") -> str:
    text = page.read_text()
    return text.split(f"<!-- {name}:start -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def test_the_committed_cells_give_the_published_matrix(tmp_path: Path) -> None:
    copy = tmp_path / "matrix"
    shutil.copytree(MATRIX / "cells", copy / "cells")
    done = subprocess.run([sys.executable, str(ROOT / "scripts/reference_matrix.py"), "--out", str(copy)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    regenerated = (copy / "matrix.md").read_text()
    assert regenerated == (MATRIX / "matrix.md").read_text()
    assert marked_block(ROOT / "EXPERIMENTS.md") == regenerated


def test_the_committed_extraction_cells_give_the_published_table() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts/extraction_table.py"), *map(str, EXTRACTION)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert marked_block(ROOT / "EXPERIMENTS.md", "extraction") == done.stdout


def test_the_committed_clean_label_replays_give_the_published_table() -> None:
    replays = sorted(map(str, CLEAN_LABEL.glob("*.json")))
    done = subprocess.run([sys.executable, str(ROOT / "scripts/clean_label_table.py"), *replays],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert marked_block(ROOT / "EXPERIMENTS.md", "clean-label") == done.stdout


def test_fedavg_badnets_claim_matches_the_committed_runs() -> None:
    with open(MATRIX / "sweep_ci.csv", newline="") as f:
        cell = next(row for row in csv.DictReader(f) if row["attack"] == "badnets" and row["defenses"] == "fedavg")
    assert int(cell["asr_n"]) >= 3 and float(cell["asr_mean"]) >= 0.9
    claim = re.search(r"FedAvg's BadNets ASR is ([\d.]+)% ± ([\d.]+)", (ROOT / "EXPERIMENTS.md").read_text())
    assert claim is not None
    assert float(claim[1]) == round(100 * float(cell["asr_mean"]), 1)
    assert float(claim[2]) == round(100 * float(cell["asr_ci95"]), 1)
