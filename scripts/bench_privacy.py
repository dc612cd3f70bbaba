"""Time one reconstruction by each gradient inversion attack on the CNN, beside one plain
forward and backward pass of the same model.

For batches of 1 and 4 Fashion-MNIST-shaped images (random pixels: the time does not depend on
them), a client's one-step update is inverted by each attack with ``--iterations`` optimiser
steps (default: each attack's own default); prints the median seconds of ``--repeats`` runs,
the seconds per iteration, and the ratio of one reconstruction to one forward+backward pass.
Then one client's local training round with DP-SGD (``--dp-images`` images, one epoch of batches
of 32) beside the same client's plain training, median seconds and their ratio. Last, label-only
membership inference: scoring ``--membership-images`` candidates under each augmentation (translate
by 1 pixel: 5 queries per image; rotate by 1 degree: 3) beside the loss threshold's one query per
image, and the fit of its per-class attack networks on as many shadow correctness vectors.

    .venv/bin/python scripts/bench_privacy.py --repeats 3
    .venv/bin/python scripts/bench_privacy.py --iterations 50 --repeats 3 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from fedsec.models import build_model
from fedsec.privacy import PRIVACY_ATTACKS, GradientInversion, LocalTraining, ObservedUpdate
from fedsec.privacy.dp_sgd import DPSGDConfig, train_dp_sgd
from fedsec.privacy.gradients import simulate_update
from fedsec.privacy.label_only import LabelOnly
from fedsec.privacy.loss_threshold import LossThreshold
from fedsec.training import ClientConfig, train_local

SHAPE, CLASSES = (1, 28, 28), 10


def median_seconds(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4], help="inversion batch sizes (none: skip)")
    parser.add_argument("--iterations", type=int, default=None, help="optimiser steps (default: each attack's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dp-images", type=int, default=600, help="examples of the DP-SGD client (0: skip)")
    parser.add_argument("--membership-images", type=int, default=2000, help="label-only candidates (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("cnn", SHAPE, CLASSES, (0.286,), (0.353,)).to(device)
    inverters = [name for name in PRIVACY_ATTACKS.names() if PRIVACY_ATTACKS.get(name).kind == "inversion"]
    print(f"device {device}, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'attack':<22}{'batch':>6}{'iterations':>12}{'s/reconstruction':>18}{'s/iteration':>13}{'ratio':>12}")
    for n in args.batches:
        x = torch.rand((n, *SHAPE), device=device)
        y = torch.arange(n, device=device) % CLASSES
        training = LocalTraining(lr=0.05, momentum=0.9, weight_decay=0.0, local_epochs=1, batch_size=n)
        update = torch.cat([u.detach().reshape(-1) for u in simulate_update(model, x, y, training)])
        observed = ObservedUpdate(model, update, training, n, SHAPE, CLASSES)

        def forward_backward() -> None:
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()

        forward_backward()  # warm-up
        plain = median_seconds(forward_backward, max(args.repeats, 20), device)
        print(f"{'forward+backward':<22}{n:>6}{1:>12}{plain:>18.5f}{plain:>13.5f}{1:>12.1f}")
        for name in inverters:
            cls = PRIVACY_ATTACKS.get(name)
            params = cls.Params() if args.iterations is None else cls.Params(iterations=args.iterations)
            attack: GradientInversion = cls(params)  # type: ignore[assignment]
            seconds = median_seconds(lambda a=attack: a.reconstruct(observed, torch.Generator().manual_seed(0)),
                                     args.repeats, device)
            iterations = params.iterations  # type: ignore[attr-defined]
            print(f"{name:<22}{n:>6}{iterations:>12}{seconds:>18.3f}{seconds / iterations:>13.5f}"
                  f"{seconds / plain:>12.0f}")
    if args.dp_images:
        dp_sgd_round(model, args.dp_images, args.repeats, device)
    if args.membership_images:
        label_only_scoring(model, args.membership_images, args.repeats, device)


def dp_sgd_round(model: nn.Module, n: int, repeats: int, device: torch.device) -> None:
    """Median seconds of one local round with and without DP-SGD on the same client data."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *SHAPE), generator=generator, dtype=torch.uint8)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    cfg = ClientConfig(local_epochs=1, batch_size=32, lr=0.05, momentum=0.9)
    dp = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    plain = median_seconds(lambda: train_local(model, x, y, cfg, torch.Generator().manual_seed(1), device),
                           repeats, device)
    private = median_seconds(lambda: train_dp_sgd(model, x, y, cfg, dp, torch.Generator().manual_seed(1), device),
                             repeats, device)
    print(f"\nlocal round, {n} images, 1 epoch of batches of 32: plain {plain:.3f} s, DP-SGD {private:.3f} s, "
          f"ratio {private / plain:.1f}")


def label_only_scoring(model: nn.Module, n: int, repeats: int, device: torch.device) -> None:
    """Median seconds of label-only scoring against the loss threshold's on the same images, and
    of fitting the attack networks on ``n`` shadow correctness vectors."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((n, *SHAPE), generator=generator).to(device)
    y = torch.randint(0, CLASSES, (n,), generator=generator).to(device)
    loss = LossThreshold(LossThreshold.Params())
    plain = median_seconds(lambda: loss.scores(model, x, y), repeats, device)
    print(f"\nmembership scoring, {n} images: loss threshold {plain:.3f} s")
    for augmentation in ("translate", "rotate"):
        attack = LabelOnly(LabelOnly.Params(augmentation=augmentation, attack_model="count"))
        seconds = median_seconds(lambda a=attack: a.scores(model, x, y), repeats, device)
        print(f"label-only, {augmentation} by 1: {seconds:.3f} s, ratio {seconds / plain:.1f}")
    vectors = (torch.rand((n, 5), generator=generator) < 0.8).float()
    membership = torch.randint(0, 2, (n,), generator=generator)
    labels = torch.arange(n) % CLASSES
    fit = median_seconds(lambda: LabelOnly(LabelOnly.Params()).fit(vectors, membership, labels, generator), 1,
                         torch.device("cpu"))
    print(f"label-only attack networks on {n} shadow vectors (4 learning rates): {fit:.2f} s")


if __name__ == "__main__":
    main()
