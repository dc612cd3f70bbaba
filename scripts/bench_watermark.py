"""Time the owner's embedding step against the same fine-tuning written as a plain PyTorch loop.

Both run ``--steps`` SGD steps (momentum 0.9) of cross-entropy on 64 clean images plus 32 keyed-label
triggers from the same model state; prints the median wall time of ``--repeats`` runs of each
and their ratio (owner / plain).

    .venv/bin/python scripts/bench_watermark.py --dataset fashion-mnist --steps 100 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from fedsec.data.datasets import load_dataset
from fedsec.models import build_model
from fedsec.scenario import parse_scenario
from fedsec.watermark.embedding import fine_tune
from fedsec.watermark.owner import WatermarkOwner


def plain_loop(model: nn.Module, clean_x: torch.Tensor, clean_y: torch.Tensor, trig_x: torch.Tensor,
               trig_y: torch.Tensor, steps: int, lr: float) -> None:
    """The reference: the same batches and loss in the shortest torch loop."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        pick = torch.randint(0, len(clean_y), (64,), generator=generator)
        tpick = torch.randperm(len(trig_y), generator=generator)[:32]
        loss = nn.functional.cross_entropy(model(clean_x[pick].float() / 255), clean_y[pick])
        loss = loss + nn.functional.cross_entropy(model(trig_x[tpick].float() / 255), trig_y[tpick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = parse_scenario({
        "name": "bench", "data": {"dataset": args.dataset},
        "watermark": {"scheme": {"name": "keyed-labels"}, "key": "seeded",
                      # target unreachable within the budget and one check only: both sides do `steps` steps
                      "embedding": {"max_steps": args.steps, "check_every": args.steps + 1, "lr": 0.01}},
    })
    dataset = load_dataset(args.dataset)
    owner = WatermarkOwner(scenario.watermark, scenario, dataset, torch.device("cpu"),
                           Path(tempfile.mkdtemp()) / "owner")
    torch.manual_seed(0)
    base = build_model("cnn", dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std)
    owner_s, plain_s = [], []
    for _ in range(args.repeats):
        model = copy.deepcopy(base)
        t = time.perf_counter()
        fine_tune(model, owner.scheme, owner.secrets, owner.clean_x, owner.clean_y, scenario.watermark.embedding,
              torch.Generator().manual_seed(0))
        owner_s.append(time.perf_counter() - t)
        model = copy.deepcopy(base)
        t = time.perf_counter()
        plain_loop(model, owner.clean_x, owner.clean_y, owner.secrets["x"], owner.secrets["y"], args.steps, 0.01)
        plain_s.append(time.perf_counter() - t)
    owner_median, plain_median = statistics.median(owner_s), statistics.median(plain_s)
    print(f"embedding {args.steps} steps on {args.dataset}: owner {owner_median:.3f} s, "
          f"plain PyTorch loop {plain_median:.3f} s, ratio {owner_median / plain_median:.2f} "
          f"(median of {args.repeats})")


if __name__ == "__main__":
    main()
