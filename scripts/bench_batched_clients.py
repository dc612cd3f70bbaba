#!/usr/bin/env python
"""Batched clients: K clients' local SGD one at a time against all K at once with ``torch.func``.

(A) trains K copies of the global CNN one after another, each on its own Fashion-MNIST images,
with fedsec's local SGD (``fedsec.sgd.SGD``: lr 0.05, momentum 0.9), as a client worker does
today; (B) trains the same K models in one vectorised pass: the K parameter sets stacked, the
per-client gradients from ``vmap(grad(loss))`` over ``functional_call``, the same momentum update
on the stacked tensors. Both see the same batches in the same order. Prints each repeat, the
medians, the ratio B/A (below 1: batching pays) and the largest difference between the two
runs' final parameters (agreement: float round-off only).

    .venv/bin/python scripts/bench_batched_clients.py [--clients 10] [--steps 38] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsec.data.datasets import load_dataset
from fedsec.models import build_model
from fedsec.sgd import SGD
from fedsec.training import to_input

LR = 0.05
MOMENTUM = 0.9


def one_at_a_time(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Each client's final parameters, (K, P), training the clients in turn; ``xs``: (K, S, B, C,
    H, W) images, ``ys``: (K, S, B) labels (client, step, example)."""
    finals = []
    for x_client, y_client in zip(xs, ys):
        local = copy.deepcopy(model)
        optimizer = SGD(local.parameters(), lr=LR, momentum=MOMENTUM)
        for x, y in zip(x_client, y_client):
            optimizer.zero_grad()
            nn.functional.cross_entropy(local(x), y).backward()
            optimizer.step()
        finals.append(torch.cat([p.detach().flatten() for p in local.parameters()]))
    return torch.stack(finals)


def vectorised(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The same training as :func:`one_at_a_time`, all clients at once; (K, P)."""
    buffers = dict(model.named_buffers())
    clients = len(xs)
    params = {n: p.detach().unsqueeze(0).repeat(clients, *[1] * p.dim()) for n, p in model.named_parameters()}
    momentum = {n: torch.zeros_like(p) for n, p in params.items()}

    def loss(client_params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, {**client_params, **buffers}, (x,)), y)

    gradients = vmap(grad(loss))
    for step in range(xs.shape[1]):
        g = gradients(params, xs[:, step], ys[:, step])
        with torch.no_grad():
            for name, p in params.items():
                momentum[name].mul_(MOMENTUM).add_(g[name])
                p.add_(momentum[name], alpha=-LR)
    return torch.cat([p.flatten(1) for p in params.values()], dim=1)


def timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """Wall seconds of ``run()`` (the device synchronised on both ends) and what it returned."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="clients trained together (the reference samples 10)")
    parser.add_argument("--steps", type=int, default=38,
                        help="SGD steps per client (38: 2 epochs of a 600-example partition)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a client actor uses 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each side, after one warm-up")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = load_dataset("fashion-mnist")
    n = args.clients * args.steps * args.batch_size
    if n > len(data.train_x):
        parser.error(f"--clients x --steps x --batch-size = {n} exceeds the {len(data.train_x)} training images")
    xs = to_input(data.train_x[:n], device).reshape(args.clients, args.steps, args.batch_size, *data.image_shape)
    ys = data.train_y[:n].reshape(args.clients, args.steps, args.batch_size).to(device)
    torch.manual_seed(0)
    model = build_model("cnn", data.image_shape, data.num_classes, data.mean, data.std).to(device)

    sides = {"one at a time": lambda: one_at_a_time(model, xs, ys), "vectorised": lambda: vectorised(model, xs, ys)}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    finals: dict[str, torch.Tensor] = {}
    for repeat in range(args.repeats + 1):  # repeat 0 warms both sides up
        for name, run in sides.items():
            s, finals[name] = timed(run, device)
            if repeat:
                seconds[name].append(s)
                print(f"repeat {repeat}: {name:>13} {s:6.2f} s")
    a, b = (statistics.median(seconds[name]) for name in sides)
    difference = (finals["vectorised"] - finals["one at a time"]).abs().max().item()
    print(f"{args.clients} clients x {args.steps} steps of {args.batch_size} on {device} ({args.threads} threads): "
          f"one at a time {a:.2f} s, vectorised {b:.2f} s (medians of {args.repeats}), "
          f"ratio vectorised / one at a time {b / a:.2f}; largest parameter difference {difference:.2e}")


if __name__ == "__main__":
    main()
