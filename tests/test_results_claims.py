"""The published reference matrix, extraction and clean-label tables are what their committed cells
give, and the prose quoting them agrees."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MATRIX = ROOT / "results" / "matrix"
EXTRACTION = [ROOT / "results" / name for name in ("extraction-keyed", "extraction-schemes", "extraction-ewe",
                                                   "extraction-ewe-late", "extraction-ewe-kappa")]
CLEAN_LABEL = ROOT / "results" / "clean-label"
DP_FEDAVG = ROOT / "results" / "dp-fedavg"


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


def test_dp_fedavg_table_matches_the_committed_runs() -> None:
    """Each row of the DP-FedAvg table in docs/privacy.md: MA mean ± interval and ε as the
    committed cells give them (ε the same in every seed; null, infinite, for clipping only)."""
    with open(DP_FEDAVG / "sweep_ci.csv", newline="") as f:
        cells = {row["defenses"]: row for row in csv.DictReader(f)}
    text = (ROOT / "docs" / "privacy.md").read_text()
    rows = {"fedavg": "FedAvg (example-weighted)", "clip-only": "`dp-fedavg`, z = 0 (clipping only)",
            "z0.1": "`dp-fedavg`, z = 0.1", "z1": "`dp-fedavg`, z = 1"}
    for label, row in rows.items():
        cell = cells[label]
        claim = re.search(rf"\| {re.escape(row)} \| ([\d.]+) ± ([\d.]+)[^|]* \| ([^|]+) \|", text)
        assert claim is not None, row
        assert int(cell["seeds"]) == 3 and int(cell["ma_n"]) == 3
        assert float(claim[1]) == round(100 * float(cell["ma_mean"]), 1), row
        assert float(claim[2]) == round(100 * float(cell["ma_ci95"]), 1), row
        epsilon = cell["client_dp_epsilon_mean"]
        if epsilon:
            assert float(claim[3]) == pytest.approx(float(epsilon), rel=5e-3), row  # as printed: 1015, 4.85
        else:
            assert claim[3] in ("∞", "no guarantee"), row


def test_fedavg_badnets_claim_matches_the_committed_runs() -> None:
    with open(MATRIX / "sweep_ci.csv", newline="") as f:
        cell = next(row for row in csv.DictReader(f) if row["attack"] == "badnets" and row["defenses"] == "fedavg")
    assert int(cell["asr_n"]) >= 3 and float(cell["asr_mean"]) >= 0.9
    claim = re.search(r"FedAvg's BadNets ASR is ([\d.]+)% ± ([\d.]+)", (ROOT / "EXPERIMENTS.md").read_text())
    assert claim is not None
    assert float(claim[1]) == round(100 * float(cell["asr_mean"]), 1)
    assert float(claim[2]) == round(100 * float(cell["asr_ci95"]), 1)
