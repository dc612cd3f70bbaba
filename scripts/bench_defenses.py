"""Time every registered defense on one (n, d) update matrix, against Flower's references.

Each defense runs as a one-stage pipeline (so screening stages include the final mean)
on float32 CPU inputs drawn from a fixed seed; the table shows the median wall time.
Krum, Multi-Krum, Bulyan, median and trimmed mean also run through Flower's reference
functions (``flwr.server.strategy.aggregate``) on the same numbers, converted beforehand
to Flower's list of (per-layer ndarrays, num_examples); the conversion is not timed.
Flower's functions can take minutes at full size, so they repeat only while their total
time stays under ``--reference-budget`` seconds (at least once); the table says how many
runs each median covers. ``max |diff|`` is the largest coordinate difference between the
two results.

Usage: python scripts/bench_defenses.py [--n 100] [--d 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.server.strategy.aggregate import (
    aggregate_bulyan,
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)

from fedsec.defenses import DEFENSES, DefensePipeline, UpdateBatch

LAYERS = 4  # the flat update is cut into this many ndarrays for Flower, like a small model


def stage_params(name: str, f: int, beta: float) -> dict[str, Any]:
    """Benchmark parameters: the Krum family and DnC assume f attackers."""
    if name in ("krum", "multi-krum", "bulyan", "dnc"):
        return {"f": f}
    if name == "trimmed-mean":
        return {"beta": beta}
    return {}


def flower_references(f: int, beta: float) -> dict[str, Callable[[list], list]]:
    """Flower's function for each compared method, with the same parameters."""
    return {
        "krum": lambda results: aggregate_krum(results, num_malicious=f, to_keep=0),
        "multi-krum": lambda results: aggregate_krum(results, num_malicious=f, to_keep=len(results) - f),
        # aggregate_bulyan pops from its argument: give it a copy (not part of the work timed).
        "bulyan": lambda results: aggregate_bulyan(list(results), f, aggregate_krum, to_keep=0),
        "median": aggregate_median,
        "trimmed-mean": lambda results: aggregate_trimmed_avg(results, beta),
    }


def timed(call: Callable[[], Any], repeats: int, budget: float | None = None) -> tuple[list[float], Any]:
    """Wall times of ``repeats`` calls (fewer once ``budget`` seconds are spent) and the last result."""
    times: list[float] = []
    result = None
    while len(times) < repeats and (budget is None or not times or sum(times) < budget):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return times, result


def to_flower(updates: torch.Tensor, weights: torch.Tensor) -> list[tuple[list[np.ndarray], int]]:
    """Rows as Flower's list of (per-layer float32 ndarrays, num_examples)."""
    rows = updates.numpy()
    return [
        ([chunk.copy() for chunk in np.array_split(row, LAYERS)], int(count))
        for row, count in zip(rows, weights.tolist(), strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="clients (rows)")
    parser.add_argument("--d", type=int, default=1_000_000, help="parameters per update (columns)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method (median reported)")
    parser.add_argument("--f", type=int, default=10, help="attackers assumed by Krum, Multi-Krum, Bulyan, DnC")
    parser.add_argument("--beta", type=float, default=0.1, help="trimmed-mean fraction cut at each end")
    parser.add_argument(
        "--reference-budget", type=float, default=60.0, help="seconds after which Flower's runs stop repeating"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    updates = torch.randn(args.n, args.d, generator=gen)
    weights = torch.randint(10, 1000, (args.n,), generator=gen).to(torch.float32)
    batch = UpdateBatch.of(
        updates,
        weights,
        torch.randn(args.d, generator=gen),
        server_update=updates.mean(dim=0),
        generator=torch.Generator().manual_seed(args.seed + 1),
    )
    references = flower_references(args.f, args.beta)
    flower_input = to_flower(updates, weights)

    print(
        f"n={args.n} d={args.d} float32 CPU, torch threads={torch.get_num_threads()}, "
        f"f={args.f}, beta={args.beta}, ours: median of {args.repeats} runs"
    )
    header = f"{'method':<18}{'ours s':>10}{'Flower s':>12}{'runs':>6}{'speed-up':>10}{'max |diff|':>12}"
    print(header)
    print("-" * len(header))
    for name in DEFENSES.names():
        pipeline = DefensePipeline([DEFENSES.get(name)(**stage_params(name, args.f, args.beta))])
        times, out = timed(lambda: pipeline(batch), args.repeats)  # noqa: B023
        ours = statistics.median(times)
        row = f"{name:<18}{ours:>10.3f}"
        if name in references:
            reference = references[name]
            ref_times, ref_out = timed(
                lambda: reference(flower_input), args.repeats, args.reference_budget  # noqa: B023
            )
            theirs = statistics.median(ref_times)
            diff = np.abs(np.concatenate([layer.ravel() for layer in ref_out]) - out.aggregate.numpy()).max()
            row += f"{theirs:>12.3f}{len(ref_times):>6}{theirs / ours:>9.1f}x{diff:>12.2e}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
