#!/usr/bin/env python
"""The deployment engine against the simulation: seconds per round of the same federation.

For each repeat, runs (A) ``scripts/deploy_local.sh N SCENARIO`` (a SuperLink and N SuperNodes on
127.0.0.1, each with its long-lived ClientApp process) and (B) ``fedsec run SCENARIO`` (the Ray
simulation), with N clients all sampled every round, alternating A and B. Reads each run's
``round_s`` from metrics.jsonl and prints the median over rounds 2.. (round 1 carries each
engine's one-time set-up: Ray's actors, the ClientApp processes' first data load), the whole
command's wall time, and the ratio A/B of the per-round medians, per repeat and over repeats.

    .venv/bin/python scripts/bench_deploy.py [--nodes 5] [--rounds 6] [--repeats 3] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsec.results import RunDirectory

ROOT = Path(__file__).resolve().parents[1]


def rounds_s(runs: Path) -> list[float]:
    """``round_s`` of each round of the one run under ``runs``."""
    (run_dir,) = runs.iterdir()
    return [float(r["round_s"]) for r in RunDirectory(run_dir).rounds()]


def timed(command: list[str]) -> float:
    """Run ``command`` in the repository; its wall seconds (exit on failure)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="scenarios/quickstart.yaml")
    parser.add_argument("--nodes", type=int, default=5, help="SuperNodes = clients, all sampled every round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="more scenario overrides, KEY=VALUE")
    args = parser.parse_args()
    overrides = [f"rounds={args.rounds}", f"data.num_clients={args.nodes}",
                 f"sampling.clients_per_round={args.nodes}", "output.plots=false", *args.set]
    print(f"{args.scenario} with {'; '.join(overrides)}")
    print("| repeat | deployment s/round | simulation s/round | ratio | deployment wall s | simulation wall s |")
    print("|---|---|---|---|---|---|")
    ratios, deployed, simulated = [], [], []
    for repeat in range(1, args.repeats + 1):
        with tempfile.TemporaryDirectory() as tmp:
            deploy_runs, sim_runs = Path(tmp, "deploy"), Path(tmp, "sim")
            deploy_wall = timed(["bash", "scripts/deploy_local.sh", str(args.nodes), args.scenario,
                                 ";".join([*overrides, f"output.dir={deploy_runs}"])])
            sim_wall = timed([sys.executable, "-m", "fedsec", "run", args.scenario, "--quiet",
                              *[f"--set={o}" for o in [*overrides, f"output.dir={sim_runs}"]]])
            deploy_round = statistics.median(rounds_s(deploy_runs)[1:])
            sim_round = statistics.median(rounds_s(sim_runs)[1:])
        deployed.append(deploy_round)
        simulated.append(sim_round)
        ratios.append(deploy_round / sim_round)
        print(f"| {repeat} | {deploy_round:.2f} | {sim_round:.2f} | {ratios[-1]:.2f} | {deploy_wall:.1f} | {sim_wall:.1f} |",
              flush=True)
    print(f"| median | {statistics.median(deployed):.2f} | {statistics.median(simulated):.2f} | "
          f"{statistics.median(ratios):.2f} | | |")


if __name__ == "__main__":
    main()
