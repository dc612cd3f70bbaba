"""Replay a last-layer fine-tuning federation on the frozen extractor's features.

With ``pretraining.fine_tune: last-layer`` only the linear head moves, so a federation of a
scenario can be replayed on the pre-trained model's penultimate features: same held-out
examples, partitions, sampled and malicious clients, local SGD settings, per-client seeds (hence
batch orders), the scenario's defense pipeline (run on the head's updates, with the server's
per-round generator), without the simulation runtime. Attackers craft their poisons every
round with the scenario's own data attack (``DataAttack.craft``, the bases and generators the
clients use), or, with ``--exact``, their poisons' features are replaced by exactly the target's
(the upper bound of any feature collision). A poisoned data supply crafts its poisons once
against the pre-trained model, as in the federation (fedsec.poisoned_supply), and honest clients
run the scenario's sanitizer on their features before training, as the client does on the
global model's (the same features: the extractor is frozen). ``--central-steps`` trains a fresh
head centrally on the union of the clients' data (with the first round's poisons) instead of
federating.

Where the replay is not the federation: a stage that adds noise (FLAME, DP noise) draws it for
the head's coordinates only, while the federation's server also perturbs the frozen extractor
(its clients' updates are zero there); defenses that need the server's root data are refused.

One line per target seed (``attack.data.target_seed``, or ``data_supply.attack.target_seed``):
targets flipped (classified as ``target_label``) by the final head and by the pre-trained one,
the crafted poisons' median feature distance to their target (relative to the target's feature
norm), the final MA, and with a sanitizer the poisons it removed and the clean rows it removed.

    python scripts/poison_frogs_replay.py scenarios/poisoning/poison-frogs-small-fine-tuning.yaml --seeds 0-19
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from fedsec.attacks import build_data_attack
from fedsec.attacks.data.base import CraftingContext
from fedsec.attacks.data.collision import CollisionAttack
from fedsec.client import client_seed
from fedsec.defenses import build_pipeline
from fedsec.defenses.base import UpdateBatch
from fedsec.federated_data import FederatedData, federated_data
from fedsec.models import build_model, output_layer
from fedsec.params import load_vector, model_vector
from fedsec.poisoned_supply import SUPPLY_ROUND, supplied_partition
from fedsec.pretraining import pretrained_state
from fedsec.sanitization.base import build_sanitizer, penultimate_features
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
    if any(stage.needs_root_data for stage in build_pipeline([d.model_dump() for d in scenario.defenses]).stages):
        raise SystemExit("the replay covers defenses without the server's root data")
    data = federated_data(scenario.data, scenario.seed, scenario.held_out_examples)
    ds = data.dataset
    model = build_model(scenario.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std)
    model.load_state_dict(pretrained_state(scenario.pretraining, scenario.model.name, ds, scenario.seed,
                                           torch.device("cpu")))
    n = scenario.data.test_samples or len(ds.test_y)
    parts = [data.client(p) for p in range(scenario.data.num_clients)]
    return Setup(scenario, data, model, [features_of(model, x) for x, _ in parts], [y for _, y in parts],
                 features_of(model, ds.test_x[:n]), ds.test_y[:n], ds.test_x[:n])


@dataclass
class Outcome:
    """One replayed federation: the final head's test predictions, the crafted poisons' relative
    feature distances to their targets, and what the honest clients' sanitizer removed (rows summed
    over clients and rounds), and which updates the server's defenses rejected."""

    predicted: Tensor
    distances: list[float] = field(default_factory=list)
    poisons_held: int = 0
    poisons_removed: int = 0
    clean_held: int = 0
    clean_removed: int = 0
    malicious_updates: int = 0
    malicious_rejected: int = 0
    benign_updates: int = 0
    benign_rejected: int = 0


def crafted_rows(attack: CollisionAttack, y: Tensor, targets: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """The rows ``craft`` turns into poisons, in its order (the bases its generator, seeded with
    ``seed``, draws first), and each one's target: the k-th block of poisons goes to the k-th target."""
    bases = attack.eligible(y).nonzero().flatten()
    bases = bases[torch.randperm(len(bases), generator=torch.Generator().manual_seed(seed))]
    k = attack.poisons_per_target
    attacked = min(len(targets), len(bases) // k)
    return bases[: attacked * k], targets[:attacked].repeat_interleave(k)


def with_poisons(s: Setup, partition: int, attack: CollisionAttack, x: Tensor, seed: int, exact: bool,
                 distances: list[float]) -> tuple[Tensor, Tensor]:
    """``partition``'s features with the poisons ``x`` (its images after crafting with ``seed``) in, or,
    ``exact``, each poison's feature set to its target's; and the bool mask of the poisons. Appends
    each crafted poison's feature distance to its target over the target's norm to ``distances``."""
    rows, owner = crafted_rows(attack, s.labels[partition], attack.asr_mask(s.test_y).nonzero().flatten(), seed)
    features, mask = s.features[partition].clone(), torch.zeros(len(s.labels[partition]), dtype=torch.bool)
    mask[rows] = True
    target_features = s.test_features[owner]
    if exact:
        features[rows] = target_features
        return features, mask
    features[rows] = poison_features = features_of(s.model, x[rows])
    distances += ((poison_features - target_features).norm(dim=1) / target_features.norm(dim=1)).tolist()
    return features, mask


def crafted_by_client(s: Setup, scenario: Scenario, attack: CollisionAttack, partition: int, round_number: int,
                      exact: bool, distances: list[float]) -> Tensor:
    """A malicious client's features this round, its poisons crafted by the attack as the client crafts
    them (same bases, same generator)."""
    x, y = s.data.client(partition)
    seed = client_seed(scenario.seed, round_number, partition) + 3
    if exact:
        return with_poisons(s, partition, attack, x, seed, exact, distances)[0]
    crafted = attack.craft(x, y, CraftingContext([s.model], s.test_x, s.test_y, torch.Generator().manual_seed(seed)))
    assert torch.equal(crafted.y, y), "a poison changed its label"
    features, mask = with_poisons(s, partition, attack, crafted.x, seed, exact, distances)
    assert torch.equal(crafted.mask, mask), "the replay drew other bases than the client"
    return features


def supplied(s: Setup, scenario: Scenario, exact: bool, distances: list[float]) -> dict[int, tuple[Tensor, Tensor]]:
    """Features and poison masks of the partitions a poisoned data supply reached, its poisons crafted
    once against the pre-trained model (fedsec.poisoned_supply)."""
    supply = scenario.data_supply
    if supply is None:
        return {}
    attack = build_data_attack(supply.attack)
    out = {}
    for p in supply.clients(scenario.data.num_clients, scenario.seed):
        seed = client_seed(scenario.seed, SUPPLY_ROUND, p)
        held = supplied_partition(scenario, s.data, p, seed)
        out[p] = with_poisons(s, p, attack, held.x, seed, exact, distances)
        assert torch.equal(held.mask, out[p][1]), "the replay drew other bases than the supply"
    return out


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


def replay(s: Setup, scenario: Scenario, exact: bool, central_steps: int) -> Outcome:
    """One federation (or central head) on features."""
    attack_config = scenario.attack
    pretrained = output_layer(s.model)
    head = nn.Linear(pretrained.in_features, pretrained.out_features)
    global_vector = model_vector(pretrained)
    pipeline = build_pipeline([d.model_dump() for d in scenario.defenses])
    sanitizer = build_sanitizer(scenario.sanitization.method) if scenario.sanitization is not None else None
    outcome = Outcome(torch.empty(0))
    held = supplied(s, scenario, exact, outcome.distances)
    union: list[tuple[Tensor, Tensor]] = []
    for round_number in range(1, (1 if central_steps else scenario.rounds) + 1):
        sampled = sample_clients(scenario.seed, round_number, scenario.data.num_clients, scenario.clients_per_round)
        malicious = attackers(scenario, round_number)
        updates, weights = [], []
        for p in sampled:
            (f, poisons), y, cfg = held.get(p, (s.features[p], None)), s.labels[p], scenario.client
            seed = client_seed(scenario.seed, round_number, p)
            if p in malicious:
                attack = build_data_attack(attack_config.data, attacker_index=sorted(malicious).index(p))
                f = crafted_by_client(s, scenario, attack, p, round_number, exact, outcome.distances)
                changes = {k: v for k, v in (("local_epochs", attack_config.local_epochs), ("lr", attack_config.lr))
                           if v is not None}
                cfg = cfg.model_copy(update=changes)
            elif sanitizer is not None:
                removed = sanitizer.flag(f, y, seed)
                poisons = torch.zeros_like(removed) if poisons is None else poisons
                outcome.poisons_held += int(poisons.sum())
                outcome.poisons_removed += int((removed & poisons).sum())
                outcome.clean_held += int((~poisons).sum())
                outcome.clean_removed += int((removed & ~poisons).sum())
                f, y = f[~removed], y[~removed]
            if central_steps:
                union.append((f, y))
                continue
            load_vector(head, global_vector)
            train_head(head, f, y, cfg, seed)
            updates.append(model_vector(head) - global_vector)
            weights.append(float(len(y)))
        if not central_steps:  # the server's aggregation: its pipeline, its generator of the round
            generator = torch.Generator().manual_seed(client_seed(scenario.seed, round_number, -2))
            batch = UpdateBatch.of(torch.stack(updates), torch.tensor(weights), global_vector, generator=generator,
                                   senders=torch.tensor(list(sampled), dtype=torch.int64))
            decided = pipeline(batch)
            global_vector = global_vector + scenario.server.lr * decided.aggregate
            bad = torch.tensor([p in malicious for p in sampled])
            outcome.malicious_updates += int(bad.sum())
            outcome.malicious_rejected += int((bad & ~decided.accepted).sum())
            outcome.benign_updates += int((~bad).sum())
            outcome.benign_rejected += int((~bad & ~decided.accepted).sum())
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
        outcome.predicted = head(s.test_features).argmax(1)
    return outcome


def attackers(scenario: Scenario, round_number: int) -> frozenset[int]:
    """The partitions that craft in a round (none without a data attack)."""
    a = scenario.attack
    if a is None or a.data is None or not a.schedule.active(round_number):
        return frozenset()
    return a.malicious(scenario.data.num_clients, scenario.seed, round_number)


def verdict(s: Setup, scenario: Scenario, outcome: Outcome) -> dict:
    """Targets flipped by the final head and by the pre-trained one, median poison distance, MA, the
    sanitizer's removals and the server's rejections."""
    probe = build_data_attack(scenario.data_attack, attacker_index=0)
    if not isinstance(probe, CollisionAttack):
        raise SystemExit("the replay covers the collision attacks (poison-frogs, convex-polytope, bullseye-polytope)")
    mask, label = probe.asr_mask(s.test_y), probe.params.target_label
    with torch.no_grad():
        before = output_layer(s.model)(s.test_features).argmax(1)
    d = outcome.distances
    return {
        "targets": int(mask.sum()),
        "flipped": int((outcome.predicted[mask] == label).sum()),
        "flipped_pretrained": int((before[mask] == label).sum()),
        "median_distance": statistics.median(d) if d else None,
        "ma": (outcome.predicted == s.test_y).float().mean().item(),
        "poisons_held": outcome.poisons_held, "poisons_removed": outcome.poisons_removed,
        "clean_held": outcome.clean_held, "clean_removed": outcome.clean_removed,
        "malicious_updates": outcome.malicious_updates, "malicious_rejected": outcome.malicious_rejected,
        "benign_updates": outcome.benign_updates, "benign_rejected": outcome.benign_rejected,
    }


def setting(scenario: Scenario) -> dict[str, str]:
    """What a results table names the replayed federation by: who poisons, the attack, the server's
    defenses and the honest clients' sanitizer."""
    crafting = any(attackers(scenario, r) for r in range(1, scenario.rounds + 1))
    return {
        "threat": "data supply" if scenario.data_supply is not None else "malicious clients",
        "attack": scenario.data_attack.name if crafting or scenario.data_supply is not None else "none",
        "defenses": "+".join(d.name for d in scenario.defenses) or "fedavg",
        "sanitizer": scenario.sanitization.method.name if scenario.sanitization is not None else "none",
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
                        "on all clients' data with the first round's poisons, instead of federating")
    parser.add_argument("--json", help="write the per-seed results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = load_scenario(args.scenario, args.overrides)
    s = setup(base)
    rows, flipped, pre, total = [], 0, 0, 0
    print("seed  targets  flipped  pre-trained  median-distance  MA       seconds")
    if base.data_attack is None:
        raise SystemExit("the scenario has no data attack: its targets are the attack's (set attack.fraction=0 "
                         "for the clean reference)")
    target_seed = "data_supply.attack.target_seed" if base.data_supply is not None else "attack.data.target_seed"
    for seed in seeds(args.seeds):
        scenario = load_scenario(args.scenario, [*args.overrides, f"{target_seed}={seed}"])
        start = time.perf_counter()
        result = verdict(s, scenario, replay(s, scenario, args.exact, args.central_steps))
        result["seed"] = seed
        rows.append(result)
        flipped, pre, total = flipped + result["flipped"], pre + result["flipped_pretrained"], total + result["targets"]
        distance = "-" if result["median_distance"] is None else f"{result['median_distance']:.3f}"
        print(f"{seed:<5} {result['targets']:<8} {result['flipped']:<8} {result['flipped_pretrained']:<12} "
              f"{distance:<16} {result['ma']:.2%}  {time.perf_counter() - start:.1f}", flush=True)
    mas = [r["ma"] for r in rows]
    print(f"targeted success {flipped}/{total} ({flipped / max(total, 1):.0%}); pre-trained model {pre}/{total}; "
          f"MA {min(mas):.1%}-{max(mas):.1%} (mean {statistics.mean(mas):.1%})")
    if base.sanitization is not None:
        held, removed = sum(r["poisons_held"] for r in rows), sum(r["poisons_removed"] for r in rows)
        clean_held, clean_removed = sum(r["clean_held"] for r in rows), sum(r["clean_removed"] for r in rows)
        print(f"sanitizer removed {removed}/{held} poison rows ({removed / max(held, 1):.1%}) and "
              f"{clean_removed}/{clean_held} clean rows ({clean_removed / max(clean_held, 1):.1%}) of the honest "
              "clients it ran at, over their rounds")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"scenario": args.scenario, "overrides": args.overrides, "exact": args.exact,
                       "central_steps": args.central_steps, "setting": setting(base), "runs": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
