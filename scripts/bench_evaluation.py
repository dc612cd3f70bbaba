"""Time the server's evaluation with glibc's default allocator settings and with fedsec's.

Each setting runs in a fresh interpreter, on a thread other than the main one (Flower runs the
server there): ``--images`` Fashion-MNIST test images through the ``cnn`` in batches of
``--batch-size`` (the scenario default, ``evaluation.batch_size``), ``--repeats`` times after one
warm-up pass. Prints the median seconds and minor page faults of each, and their ratio
(defaults / fedsec's).

    .venv/bin/python scripts/bench_evaluation.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PASS = """
import json, resource, sys, threading, time
import torch
from fedsec.allocator import keep_large_blocks
from fedsec.data.datasets import load_dataset
from fedsec.models import build_model
from fedsec.training import evaluate

mode, dataset, images, batch, repeats = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
if mode == "fedsec":
    keep_large_blocks()
data = load_dataset(dataset)
x, y = data.test_x[:images], data.test_y[:images]
model = build_model("cnn", data.image_shape, data.num_classes, data.mean, data.std)
timings = []

def measure():
    for i in range(repeats + 1):
        faults, started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        evaluate(model, x, y, batch, torch.device("cpu"))
        if i:
            timings.append((time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))

worker = threading.Thread(target=measure)
worker.start()
worker.join()
print(json.dumps(timings))
"""


def run(mode: str, args: argparse.Namespace) -> tuple[float, float]:
    """Median seconds and page faults of one evaluation under ``mode`` ("defaults" or "fedsec")."""
    out = subprocess.run([sys.executable, "-c", PASS, mode, args.dataset, str(args.images), str(args.batch_size),
                          str(args.repeats)], capture_output=True, text=True, check=True)
    timings = json.loads(out.stdout.splitlines()[-1])
    return statistics.median(t for t, _ in timings), statistics.median(f for _, f in timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--images", type=int, default=10_000, help="test images per evaluation")
    parser.add_argument("--batch-size", type=int, default=1000, help="images per forward pass")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    default_s, default_faults = run("defaults", args)
    kept_s, kept_faults = run("fedsec", args)
    print(f"evaluation of {args.images} images, batches of {args.batch_size}, median of {args.repeats}:")
    print(f"  glibc defaults:      {default_s:.3f} s, {default_faults:,.0f} page faults")
    print(f"  keep_large_blocks(): {kept_s:.3f} s, {kept_faults:,.0f} page faults")
    print(f"  ratio defaults / fedsec: {default_s / kept_s:.2f}")


if __name__ == "__main__":
    main()
