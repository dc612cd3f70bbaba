#!/usr/bin/env python
"""Many virtual clients: time and peak memory of the simulation against a plain PyTorch loop.

For each repeat, runs (A) ``fedsec run SCENARIO`` (default: 1,000 virtual clients, 20 sampled
per round) and (B) ``scripts/bench_sim.py --plain``, one process replaying the identical
training (same sampled clients, partitions, seeds, FedAvg, evaluation cadence) without Flower or
Ray, both as fresh processes. Peak memory is the largest sum of proportional set sizes (PSS:
shared pages split between the processes that map them) over each command's whole process
tree, Ray's workers included, sampled every ``--interval`` seconds. Prints each pair, medians,
the simulation's median seconds per round (round 1, with Ray's start-up, excluded) and the
ratios A/B; ``--simulation-only`` skips (B).

    .venv/bin/python scripts/bench_scale.py [SCENARIO] [--repeats 3] [--simulation-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def tree_pss(root: psutil.Process) -> int:
    """Bytes of PSS of ``root`` and all its descendants (processes that vanish are skipped)."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measured(command: list[str], interval: float) -> tuple[float, float]:
    """Run ``command``; its wall seconds and peak PSS of its process tree in GiB."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            peak = max(peak, tree_pss(root))
            done.wait(interval)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if code:
        raise SystemExit(f"{' '.join(command[:4])} ... failed with exit code {code}")
    return wall, peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", default="scenarios/scale-1000.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling period, seconds")
    parser.add_argument("--simulation-only", action="store_true", help="measure the simulation alone")
    args = parser.parse_args()
    sims: list[tuple[float, float]] = []
    plains: list[tuple[float, float]] = []
    round_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fedsec-scale-") as tmp:
        rounds = json.loads(subprocess.run(
            [sys.executable, "-m", "fedsec", "resolve", args.scenario, "--key", "rounds"],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        for repeat in range(args.repeats):
            out = Path(tmp) / f"runs-{repeat}"
            sims.append(measured([sys.executable, "-m", "fedsec", "run", args.scenario, "--quiet",
                                  f"--set=output.dir={out}"], args.interval))
            (run_dir,) = out.iterdir()
            records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            round_times.append(statistics.median(r["round_s"] for r in records[1:]))
            line = (f"repeat {repeat + 1}: simulation {sims[-1][0]:.1f} s, peak {sims[-1][1]:.2f} GiB, "
                    f"{round_times[-1]:.2f} s/round")
            if not args.simulation_only:
                plains.append(measured([sys.executable, str(ROOT / "scripts" / "bench_sim.py"), args.scenario,
                                        f"--rounds={rounds}", f"--plain={tmp}/plain-{repeat}.json"], args.interval))
                line += f"; plain loop {plains[-1][0]:.1f} s, peak {plains[-1][1]:.2f} GiB"
            print(line, flush=True)

    median = statistics.median
    print(f"\n{args.scenario}: medians of {args.repeats} (whole processes, start-up included)")
    print(f"simulation: {median(s[0] for s in sims):.1f} s, {median(round_times):.2f} s/round, "
          f"peak {median(s[1] for s in sims):.2f} GiB")
    if plains:
        print(f"plain loop: {median(p[0] for p in plains):.1f} s, peak {median(p[1] for p in plains):.2f} GiB")
        print(f"ratio simulation/plain: time {median(s[0] / p[0] for s, p in zip(sims, plains, strict=True)):.2f}, "
              f"peak memory {median(s[1] / p[1] for s, p in zip(sims, plains, strict=True)):.2f}")


if __name__ == "__main__":
    main()
