"""Replay a last-layer fine-tuning federation on the frozen extractor's features.

With ``pretraining.fine_tune: last-layer`` only the linear head moves, so a federation of a
scenario can be replayed on the pre-trained model's penultimate features: same held-out
examples, partitions, sampled and malicious clients, local SGD settings, per-client seeds (hence
batch orders) and FedAvg, without the simulation runtime. Attackers craft their poisons every
round with the scenario's own data attack (``DataAttack.craft``, the bases and generators the
clients use), or, with ``--exact``, their poisons' features are replaced by exactly the target's
(the upper bound of any feature collision). ``--central-steps`` trains a fresh head centrally on
the union of the clients' data (with the first round's poisons) instead of federating.

One line per target seed (``attack.data.target_seed``): targets flipped (classified as
``target_label``) by the final head and by the pre-trained one, the crafted poisons' median
feature distance to their target (relative to the target's feature norm) and the final MA.

    python scripts/poison_frogs_replay.py scenarios/poisoning/poison-frogs-small-fine-tuning.yaml --seeds 0-19
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fedsec.attacks import build_data_attack
from fedsec.attacks.data.base import CraftingContext
from fedsec.attacks.data.collision import CollisionAttack
from fedsec.client import client_seed
from fedsec.federated_data import FederatedData, federated_data
from fedsec.models import build_model, output_layer
from fedsec.params import load_vector, model_vector
from fedsec.pretraining import pretrained_state
from fedsec.sanitization.base import penultimate_features
from fedsec.sampling import sample_clients
from fedsec.scenario import Scenario, load_scenario
from fedsec.training import ClientConfig, make_optimizer


@dataclass
class Setup:
    """What every target's replay shares: the scenario, the data, the pre-trained model and features."""

    scenario: Scenario
    data: FederatedData
    model: nn.Module
    features: list[Tensor]  # per partition, (n_p, d)
    labels: list[Tensor]
    test_features: Tensor
    test_y: Tensor
    test_x: Tensor


def features_of(model: nn.Module, x: Tensor) -> Tensor:
    """Penultimate features of uint8 images ``x`` on the CPU."""
    return penultimate_features(model, x, 1_000, torch.device("cpu"))


def setup(scenario: Scenario) -> Setup:
    if scenario.pretraining is None or scenario.pretraining.fine_tune != "last-layer":
        raise SystemExit("the replay needs a scenario with pretraining.fine_tune: last-layer")
    if any(d.name != "fedavg" for d in scenario.defenses) or scenario.data_supply or scenario.sanitization:
        raise SystemExit("the replay covers FedAvg federations without data supply or sanitization")
    data = federated_data(scenario.data, scenario.seed, scenario.held_out_examples)
    ds = data.dataset
    model = build_model(scenario.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std)
    model.load_state_dict(pretrained_state(scenario.pretraining, scenario.model.name, ds, scenario.seed,
                                           torch.device("cpu")))
    n = scenario.data.test_samples or len(ds.test_y)
    parts = [data.client(p) for p in range(scenario.data.num_clients)]
    return Setup(scenario, data, model, [features_of(model, x) for x, _ in parts], [y for _, y in parts],
                 features_of(model, ds.test_x[:n]), ds.test_y[:n], ds.test_x[:n])


def poisoned_features(s: Setup, scenario: Scenario, attack: CollisionAttack, partition: int, round_number: int,
                      exact: bool) -> tuple[Tensor, list[float]]:
    """The attacker's partition features with its poisons in: crafted by the attack as the client crafts
    them this round (same bases, same generator), or, ``exact``, each poison's feature set to its
    target's. Also each crafted poison's feature distance to its target over the target's norm."""
    x, y = s.data.client(partition)
    seed = client_seed(scenario.seed, round_number, partition) + 3
    targets = attack.asr_mask(s.test_y).nonzero().flatten()
    # the base rows in the order craft draws them: the k-th block of poisons goes to the k-th target
    bases = attack.eligible(y).nonzero().flatten()
    bases = bases[torch.randperm(len(bases), generator=torch.Generator().manual_seed(seed))]
    k = attack.poisons_per_target
    attacked = min(len(targets), len(bases) // k)
    rows = bases[: attacked * k]
    owner = targets[:attacked].repeat_interleave(k)
    feats = s.features[partition].clone()
    if exact:
        feats[rows] = s.test_features[owner]
        return feats, []
    context = CraftingContext([s.model], s.test_x, s.test_y, torch.Generator().manual_seed(seed))
    crafted = attack.craft(x, y, context)
    expected = torch.zeros_like(crafted.mask)
    expected[rows] = True
    assert torch.equal(crafted.mask, expected), "the replay drew other bases than the client"
    assert torch.equal(crafted.y, y), "a poison changed its label"
    poison_features = features_of(s.model, crafted.x[rows])
    feats[rows] = poison_features
    target_features = s.test_features[owner]
    distance = ((poison_features - target_features).norm(dim=1) / target_features.norm(dim=1)).tolist()
    return feats, distance


def train_head(head: nn.Linear, f: Tensor, y: Tensor, cfg: ClientConfig, seed: int) -> None:
    """The client's local training (fedsec.training.train_local) on features: same optimizer and
    batch order (the generator seeded with the client's seed)."""
    optimizer = make_optimizer(head, cfg)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.local_epochs):
        for batch in torch.randperm(len(y), generator=generator).split(cfg.batch_size):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(head(f[batch]), y[batch]).backward()
            optimizer.step()


def replay(s: Setup, scenario: Scenario, exact: bool, central_steps: int) -> tuple[Tensor, list[float]]:
    """One federation (or central head) on features: the final head's predictions on the test set, and
    the crafted poisons' relative feature distances to their targets."""
    attack_config = scenario.attack
    pretrained = output_layer(s.model)
    head = nn.Linear(pretrained.in_features, pretrained.out_features)
    global_vector = model_vector(pretrained)
    distances: list[float] = []
    union: list[tuple[Tensor, Tensor]] = []
    for round_number in range(1, (1 if central_steps else scenario.rounds) + 1):
        sampled = sample_clients(scenario.seed, round_number, scenario.data.num_clients, scenario.clients_per_round)
        malicious = attackers(scenario, round_number)
        updates, weights = [], []
        for p in sampled:
            f, y, cfg = s.features[p], s.labels[p], scenario.client
            if p in malicious:
                attack = build_data_attack(attack_config.data, attacker_index=sorted(malicious).index(p))
                f, distance = poisoned_features(s, scenario, attack, p, round_number, exact)
                distances += distance
                changes = {k: v for k, v in (("local_epochs", attack_config.local_epochs), ("lr", attack_config.lr))
                           if v is not None}
                cfg = cfg.model_copy(update=changes)
            if central_steps:
                union.append((f, y))
                continue
            load_vector(head, global_vector)
            train_head(head, f, y, cfg, client_seed(scenario.seed, round_number, p))
            updates.append(model_vector(head) - global_vector)
            weights.append(float(len(y)))
        if not central_steps:  # FedAvg: the example-weighted mean update
            w = torch.tensor(weights)
            global_vector = global_vector + scenario.server.lr * (torch.stack(updates) * (w / w.sum())[:, None]).sum(0)
    if central_steps:  # cold start, Adam 0.01, full batch
        f, y = torch.cat([u[0] for u in union]), torch.cat([u[1] for u in union])
        torch.manual_seed(scenario.seed)
        head = nn.Linear(pretrained.in_features, pretrained.out_features)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
        for _ in range(central_steps):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(head(f), y).backward()
            optimizer.step()
    else:
        load_vector(head, global_vector)
    with torch.no_grad():
        return head(s.test_features).argmax(1), distances


def attackers(scenario: Scenario, round_number: int) -> frozenset[int]:
    """The partitions that craft in a round (none without a data attack)."""
    a = scenario.attack
    if a is None or a.data is None or not a.schedule.active(round_number):
        return frozenset()
    return a.malicious(scenario.data.num_clients, scenario.seed, round_number)


def verdict(s: Setup, scenario: Scenario, predicted: Tensor, distances: list[float]) -> dict:
    """Targets flipped by the final head and by the pre-trained one, median poison distance, MA."""
    probe = build_data_attack(scenario.attack.data, attacker_index=0)
    if not isinstance(probe, CollisionAttack):
        raise SystemExit("the replay covers the collision attacks (poison-frogs, convex-polytope, bullseye-polytope)")
    mask, label = probe.asr_mask(s.test_y), probe.params.target_label
    with torch.no_grad():
        before = output_layer(s.model)(s.test_features).argmax(1)
    return {
        "targets": int(mask.sum()),
        "flipped": int((predicted[mask] == label).sum()),
        "flipped_pretrained": int((before[mask] == label).sum()),
        "median_distance": statistics.median(distances) if distances else None,
        "ma": (predicted == s.test_y).float().mean().item(),
    }


def seeds(text: str) -> list[int]:
    """``0-19`` or ``0,3,5`` (or a mix) -> a list of ints."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="scenario file (last-layer fine-tuning, a collision attack)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario override, as fedsec run --set (repeatable)")
    parser.add_argument("--seeds", default="0", help="target seeds, one replay each: 0-19, or 0,4,6 (default 0)")
    parser.add_argument("--exact", action="store_true",
                        help="replace each poison's feature by its target's instead of crafting")
    parser.add_argument("--central-steps", type=int, default=0,
                        help="train a fresh head centrally (Adam 0.01, full batch) for this many steps "
                        "on all clients' data with the first round's poisons, instead of FedAvg")
    parser.add_argument("--json", help="write the per-seed results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = load_scenario(args.scenario, args.overrides)
    s = setup(base)
    rows, flipped, pre, total = [], 0, 0, 0
    print("seed  targets  flipped  pre-trained  median-distance  MA       seconds")
    if base.attack is None or base.attack.data is None:
        raise SystemExit("the scenario has no data attack: its targets are the attack's (set attack.fraction=0 "
                         "for the clean reference)")
    clean = None  # without attackers every target seed replays the same federation: once
    if not any(attackers(base, r) for r in range(1, base.rounds + 1)):
        clean = replay(s, base, args.exact, args.central_steps)
    for seed in seeds(args.seeds):
        scenario = load_scenario(args.scenario, [*args.overrides, f"attack.data.target_seed={seed}"])
        start = time.perf_counter()
        result = verdict(s, scenario, *(clean or replay(s, scenario, args.exact, args.central_steps)))
        result["seed"] = seed
        rows.append(result)
        flipped, pre, total = flipped + result["flipped"], pre + result["flipped_pretrained"], total + result["targets"]
        distance = "-" if result["median_distance"] is None else f"{result['median_distance']:.3f}"
        print(f"{seed:<5} {result['targets']:<8} {result['flipped']:<8} {result['flipped_pretrained']:<12} "
              f"{distance:<16} {result['ma']:.2%}  {time.perf_counter() - start:.1f}", flush=True)
    mas = [r["ma"] for r in rows]
    print(f"targeted success {flipped}/{total} ({flipped / max(total, 1):.0%}); pre-trained model {pre}/{total}; "
          f"MA {min(mas):.1%}-{max(mas):.1%} (mean {statistics.mean(mas):.1%})")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"scenario": args.scenario, "overrides": args.overrides, "exact": args.exact,
                       "central_steps": args.central_steps, "runs": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
