#!/usr/bin/env python
"""Simulation vs plain PyTorch: the same federated training, timed as whole processes.

For each repeat, runs (A) ``fedsec run SCENARIO`` — a real Flower simulation on Ray — and
(B) this script's ``--plain`` mode, a single-process PyTorch loop replaying the identical
work: the same sampled clients, partitions, seeds, epochs, batch size, model, FedAvg
aggregation and evaluation cadence. Each run is a fresh process with a fresh partition cache,
so both pay imports, data loading, partitioning and (for A) Ray start-up. Prints each pair,
the medians and the median of the per-pair ratios A/B, and both final MAs (they should agree
closely: the arithmetic is the same, only thread counts differ).

    .venv/bin/python scripts/bench_sim.py [SCENARIO] [--rounds 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(scenario_path: str, overrides: list[str], out: Path) -> None:
    """The federation's training work in one process, no Flower, no Ray."""
    import torch

    from fedsec.client import LocalTrainer
    from fedsec.evaluation import Evaluator
    from fedsec.federated_data import federated_data
    from fedsec.sampling import sample_clients
    from fedsec.models import build_model
    from fedsec.params import load_vector, model_vector
    from fedsec.scenario import load_scenario
    from fedsec.training import resolve_device

    s = load_scenario(scenario_path, overrides)
    device = resolve_device(s.resources.device)
    data = federated_data(s.data, s.seed)
    ds = data.dataset
    torch.manual_seed(s.seed)
    server_model = build_model(s.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std).to(device)
    global_vector = model_vector(server_model)
    trainer = LocalTrainer(s, data, device)
    evaluator = Evaluator(ds, s, device)
    mas = []
    for rnd in range(1, s.rounds + 1):
        local = [trainer.train(p, rnd, global_vector)
                 for p in sample_clients(s.seed, rnd, s.data.num_clients, s.clients_per_round)]
        weights = torch.tensor([float(u.result.num_examples) for u in local], device=device)
        fedavg = (weights / weights.sum()) @ torch.stack([u.update for u in local])
        global_vector = global_vector + s.server.lr * fedavg
        if rnd % s.evaluation.every == 0 or rnd == s.rounds:
            load_vector(server_model, global_vector)
            mas.append(evaluator(server_model)["ma"])
    out.write_text(json.dumps({"ma": mas}))


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", default="scenarios/fmnist-fedavg.yaml")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain", metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help="extra key.path=value overrides")
    args = parser.parse_args()
    overrides = [f"rounds={args.rounds}", *args.set]
    if args.plain:
        plain_loop(args.scenario, overrides, Path(args.plain))
        return

    sim_times, plain_times, ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="fedsec-bench-") as tmp:
        for repeat in range(args.repeats):
            env = {**os.environ, "FEDSEC_CACHE": f"{tmp}/cache-sim-{repeat}"}
            run_root = f"{tmp}/runs-{repeat}"
            sim = timed([sys.executable, "-m", "fedsec", "run", args.scenario, "--quiet",
                         *[f"--set={o}" for o in overrides], f"--set=output.dir={run_root}"], env)
            env["FEDSEC_CACHE"] = f"{tmp}/cache-plain-{repeat}"
            plain_out = Path(tmp) / f"plain-{repeat}.json"
            plain = timed([sys.executable, __file__, args.scenario, f"--rounds={args.rounds}",
                           *[f"--set={o}" for o in args.set], f"--plain={plain_out}"], env)
            (run_dir,) = Path(run_root).iterdir()
            sim_ma = json.loads((run_dir / "summary.json").read_text())["ma"]
            plain_ma = json.loads(plain_out.read_text())["ma"][-1]
            sim_times.append(sim)
            plain_times.append(plain)
            ratios.append(sim / plain)
            print(f"repeat {repeat + 1}: simulation {sim:7.1f} s (MA {sim_ma:.2%})   "
                  f"plain {plain:7.1f} s (MA {plain_ma:.2%})   ratio {sim / plain:.2f}", flush=True)
    print(f"\n{args.scenario}, {args.rounds} rounds, {args.repeats} repeats (whole processes, start-up included)")
    print(f"simulation median {statistics.median(sim_times):.1f} s")
    print(f"plain loop median {statistics.median(plain_times):.1f} s")
    print(f"ratio simulation/plain: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
