"""Where the Hidden Trigger's poisons land in the frozen extractor's feature space.

For a last-layer fine-tuning scenario with a ``hidden-trigger`` attack: one client's target_label
images are crafted into poisons against its own triggered source images with the pre-trained
model (the attack's own collision code and parameters), then prints, as medians relative to the
feature norm, how far the trigger moves a source image's features, how far the poisons end from
the nearest triggered source, and whether a triggered test source lies nearer to a poison than to
every clean source image of the federation (what the fine-tuned head would need to send it to
target_label).

    python scripts/hidden_trigger_geometry.py scenarios/poisoning/hidden-trigger-small-fine-tuning.yaml
    python scripts/hidden_trigger_geometry.py scenarios/poisoning/hidden-trigger-small-fine-tuning.yaml \
        --set attack.data.patch_size=8
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from fedsec.attacks import build_data_attack
from fedsec.attacks.data.collision import feature_map
from fedsec.attacks.data.hidden_trigger import hidden_trigger_collision, paste_patch
from fedsec.federated_data import federated_data
from fedsec.models import build_model
from fedsec.pretraining import pretrained_state
from fedsec.scenario import load_scenario


def relative(a: Tensor, b: Tensor) -> float:
    """Median of ||a_i − b_i|| / ||b_i||."""
    return ((a - b).norm(dim=1) / b.norm(dim=1)).median().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="a last-layer fine-tuning scenario with a hidden-trigger attack")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario override, as fedsec run --set (repeatable)")
    parser.add_argument("--client", type=int, default=4, help="the partition whose images are crafted (default 4)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    s = load_scenario(args.scenario, args.overrides)
    if s.pretraining is None or s.attack is None or s.attack.data is None or s.attack.data.name != "hidden-trigger":
        raise SystemExit("the scenario needs a pretraining section and a hidden-trigger attack")
    data = federated_data(s.data, s.seed, s.held_out_examples)
    ds, p = data.dataset, s.attack.data
    model = build_model(s.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std)
    model.load_state_dict(pretrained_state(s.pretraining, s.model.name, ds, s.seed, torch.device("cpu")))
    features, attack = feature_map(model), build_data_attack(p)
    x, y = data.client(args.client)
    bases, sources = x[y == p.target_label], x[y == p.source_class]
    n = min(len(bases), len(sources))
    unit = lambda t: t.float() / 255  # noqa: E731
    triggered = paste_patch(sources[:n], attack.patch(ds.image_shape[0]), torch.Generator().manual_seed(0))
    poisons, losses = hidden_trigger_collision(features, unit(bases[:n]), unit(triggered), p.epsilon, p.lr,
                                               p.iterations, p.decay, p.decay_every)
    test_sources = ds.test_x[: s.data.test_samples][ds.test_y[: s.data.test_samples] == p.source_class]
    clean_sources = torch.cat([xs[ys == p.source_class] for xs, ys in map(data.client, range(s.data.num_clients))])
    with torch.no_grad():
        f_source, f_triggered, f_poison = features(unit(sources[:n])), features(unit(triggered)), features(poisons)
        f_test = features(unit(attack.apply_test_trigger(test_sources)))
        f_clean = features(unit(clean_sources))
    to_poison = torch.cdist(f_test, f_poison).min(1).values
    to_clean = torch.cdist(f_test, f_clean).min(1).values
    nearest = torch.cdist(f_poison, f_triggered).min(1).values / f_triggered.norm(dim=1).mean()
    print(f"client {args.client}: {n} poisons, collision loss {losses[0]:.0f} -> {losses[-1]:.0f} "
          f"in {p.iterations} steps")
    print(f"trigger moves a source's features by {relative(f_triggered, f_source):.2f} of their norm")
    print(f"poison to nearest triggered source: {nearest.median():.2f} of the triggered sources' mean norm")
    print(f"triggered test sources nearer a poison than any clean source: {(to_poison < to_clean).float().mean():.1%} "
          f"(median distance ratio {(to_poison / to_clean).median():.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
