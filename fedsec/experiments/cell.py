"""Run one prepared sweep cell: ``python -m fedsec.experiments.cell RUN_DIR``.

RUN_DIR already holds the cell's resolved scenario.yaml; the run writes its records next to it
(the same run directory ``fedsec run`` would write, at a path the sweep chose).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fedsec.results import SCENARIO_FILE, RunDirectory
from fedsec.scenario import load_scenario


def run_cell(path: Path) -> dict[str, Any]:
    """Simulate the scenario stored in ``path`` into ``path``; returns the run summary."""
    from fedsec.fl.simulation import simulate

    return simulate(load_scenario(path / SCENARIO_FILE), RunDirectory(path), show_progress=False)


if __name__ == "__main__":
    summary = run_cell(Path(sys.argv[1]))
    print(f"finished {summary['rounds']} rounds in {summary['wall_s']:.1f} s")
