"""Time every registered runtime guard (default parameters) on the CNN at Fashion-MNIST shape.

The model (``cnn`` of fedsec/models.py, 1x28x28 inputs, 10 classes, seeded initial weights) and
uint8 inputs drawn from a fixed seed are the same for every guard. Each guard is fitted once on
``--clean`` images (fit time shown, not in the ratio), then timed on ``--inputs`` images: the
table shows the median over ``--repeats`` alternating runs of seconds per 1,000 inputs, beside the plain
model's inference on the same inputs measured in the same run, and their ratio.

The purifiers (BDMAE, Februus) train their inpainter for ``--inpainter-steps`` steps (their
per-input cost does not depend on how well it is trained: BDMAE always makes 50 restorations).

Usage: python scripts/bench_guards.py [--inputs 1000] [--clean 2000] [--repeats 5] [--device auto]
       [--inpainter-steps 400] [--guards strip bdmae ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from fedsec.guards import GUARDS, CleanData, build_guard
from fedsec.models import build_model
from fedsec.training import predict, resolve_device

SHAPE, CLASSES, MEAN, STD = (1, 28, 28), 10, (0.2860,), (0.3530,)


def timed(run: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``run``, in seconds (GPU work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000, help="inputs per timed run")
    parser.add_argument("--clean", type=int, default=2000, help="clean images the guards are fitted on")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per guard (median)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--inpainter-steps", type=int, default=400, help="training steps of the purifiers' inpainter")
    parser.add_argument("--guards", nargs="+", default=GUARDS.names(), choices=GUARDS.names(), help="guards timed")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model("cnn", SHAPE, CLASSES, MEAN, STD).to(device).eval()
    g = torch.Generator().manual_seed(0)
    clean = CleanData(torch.randint(0, 256, (args.clean, *SHAPE), generator=g, dtype=torch.uint8).to(device),
                      torch.randint(0, CLASSES, (args.clean,), generator=g).to(device), CLASSES, MEAN, STD)
    x = torch.randint(0, 256, (args.inputs, *SHAPE), generator=g, dtype=torch.uint8).to(device)
    print(f"device {device}, {args.inputs} inputs, {args.repeats} repeats, torch threads {torch.get_num_threads()}")
    print(f"{'guard':<20}{'fit s':>9}{'guard s/1000':>15}{'plain s/1000':>15}{'ratio':>9}")
    for name in args.guards:
        spec = {"name": name}
        if "inpainter_steps" in GUARDS.get(name).Params.model_fields:
            spec["inpainter_steps"] = args.inpainter_steps
        guard = build_guard(spec)
        started = time.perf_counter()
        guard.fit(model, clean, torch.Generator().manual_seed(0))
        fit_s = time.perf_counter() - started
        # Alternate guard and plain runs so that load on a shared machine hits both alike.
        runs = [(timed(lambda: guard(model, x), device), timed(lambda: predict(model, x, 1024, device), device))
                for _ in range(args.repeats)]
        guarded, plain = (1000 * statistics.median(column) / args.inputs for column in zip(*runs, strict=True))
        print(f"{name:<20}{fit_s:>9.2f}{guarded:>15.4f}{plain:>15.4f}{guarded / plain:>9.1f}")


if __name__ == "__main__":
    main()
