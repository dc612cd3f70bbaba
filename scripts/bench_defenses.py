"""Time every registered defense on one (n, d) update matrix, against Flower's references.

Each defense runs as a one-stage pipeline (so screening stages include the final mean)
on float32 CPU inputs drawn from a fixed seed; the table shows the median wall time.
Krum, Multi-Krum, Bulyan, median and trimmed mean also run through Flower's reference
functions (``flwr.server.strategy.aggregate``), and DP-FedAvg through the clipping of Flower's
central DP (``flwr.supercore.differential_privacy``) and an equal-weight ``aggregate``, both
without noise so that the results compare, on the same numbers, converted beforehand
to Flower's list of (per-layer ndarrays, num_examples); the conversion is not timed.
Flower's runs alternate with ours, so that both medians see the same machine load; they
can take minutes at full size, so they repeat only while their total time stays under
``--reference-budget`` seconds (at least once): the ``runs`` column says how many runs each
Flower median covers. ``speed-up`` is Flower's median over ours (above 1: ours is faster);
``max |diff|`` is the largest coordinate difference between the two results.

Usage: python scripts/bench_defenses.py [--n 100] [--d 1000000] [--repeats 5]
       [--methods median trimmed-mean]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from flwr.server.strategy.aggregate import (
    aggregate,
    aggregate_bulyan,
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)
from flwr.supercore.differential_privacy import clip_inputs_inplace

from fedsec.defenses import DEFENSES, DefensePipeline, UpdateBatch

LAYERS = 4  # the flat update is cut into this many ndarrays for Flower, like a small model
DP_CLIP = 500.0  # DP-FedAvg's S: below the norm of a row of d = 10^6 standard normals (1000), so every row is clipped

FlowerInput = list[tuple[list[np.ndarray], int]]


def stage_params(name: str, f: int, beta: float) -> dict[str, Any]:
    """Benchmark parameters: the Krum family and DnC assume f attackers."""
    if name in ("krum", "multi-krum", "bulyan", "dnc"):
        return {"f": f}
    if name == "trimmed-mean":
        return {"beta": beta}
    if name == "dp-fedavg":
        return {"clip": DP_CLIP, "noise_multiplier": 0.0}
    return {}


def flower_references(f: int, beta: float) -> dict[str, Callable[[FlowerInput], list[np.ndarray]]]:
    """Flower's function for each compared method, with the same parameters."""

    def multi_krum(results: FlowerInput) -> list[np.ndarray]:
        return aggregate_krum(results, num_malicious=f, to_keep=len(results) - f)

    def dp_fedavg(results: FlowerInput) -> list[np.ndarray]:
        clipped = []
        for layers, _ in results:
            copies = [layer.copy() for layer in layers]
            clip_inputs_inplace(copies, DP_CLIP)
            clipped.append((copies, 1))
        return aggregate(clipped)

    def bulyan(results: FlowerInput) -> list[np.ndarray]:
        # aggregate_bulyan pops from its argument: it gets a (shallow, cheap) copy.
        return aggregate_bulyan(list(results), f, aggregate_krum, to_keep=0)

    return {
        "krum": lambda results: aggregate_krum(results, num_malicious=f, to_keep=0),
        "multi-krum": multi_krum,
        "bulyan": bulyan,
        "median": aggregate_median,
        "trimmed-mean": lambda results: aggregate_trimmed_avg(results, beta),
        "dp-fedavg": dp_fedavg,
    }


def timed(
    ours: Callable[[], Any], theirs: Callable[[], Any] | None, repeats: int, budget: float
) -> tuple[list[float], Any, list[float], Any]:
    """Wall times and last results of ``repeats`` calls of ``ours`` and, alternating with them
    (so both see the same machine load), of ``theirs`` while its total stays under ``budget`` s."""
    times: list[float] = []
    ref_times: list[float] = []
    result = ref_result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = ours()
        times.append(time.perf_counter() - start)
        if theirs is not None and (not ref_times or sum(ref_times) < budget):
            start = time.perf_counter()
            ref_result = theirs()
            ref_times.append(time.perf_counter() - start)
    return times, result, ref_times, ref_result


def to_flower(updates: torch.Tensor, weights: torch.Tensor) -> FlowerInput:
    """Rows as Flower's list of (per-layer float32 ndarrays, num_examples)."""
    return [
        ([chunk.copy() for chunk in np.array_split(row, LAYERS)], int(count))
        for row, count in zip(updates.numpy(), weights.tolist(), strict=True)
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100, help="clients (rows)")
    parser.add_argument("--d", type=int, default=1_000_000, help="parameters per update")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    parser.add_argument("--f", type=int, default=10, help="attackers assumed (Krum family, DnC)")
    parser.add_argument("--beta", type=float, default=0.1, help="trimmed-mean cut at each end")
    parser.add_argument(
        "--reference-budget",
        type=float,
        default=60.0,
        help="seconds of Flower runs after which no new one starts",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", nargs="+", metavar="NAME", help="registered defenses to time (default: all)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
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
        f"f={args.f}, beta={args.beta}; ours: median of {args.repeats} runs, "
        f"Flower: median of 'runs' runs (new runs stop after {args.reference_budget:g} s)"
    )
    header = (
        f"{'method':<18}{'ours s':>10}{'Flower s':>12}{'runs':>6}{'speed-up':>10}{'max |diff|':>12}"
    )
    print(header, "-" * len(header), sep="\n")
    for name in args.methods or DEFENSES.names():
        pipeline = DefensePipeline([DEFENSES.get(name)(**stage_params(name, args.f, args.beta))])
        reference = partial(references[name], flower_input) if name in references else None
        times, out, ref_times, ref_out = timed(
            partial(pipeline, batch), reference, args.repeats, args.reference_budget
        )
        ours = statistics.median(times)
        row = f"{name:<18}{ours:>10.3f}"
        if ref_times:
            theirs = statistics.median(ref_times)
            flat = np.concatenate([layer.ravel() for layer in ref_out])
            diff = np.abs(flat - out.aggregate.numpy()).max()
            row += f"{theirs:>12.3f}{len(ref_times):>6}{theirs / ours:>9.2f}x{diff:>12.2e}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
