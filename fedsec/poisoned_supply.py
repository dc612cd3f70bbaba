"""A poisoned data supply: the partitions of chosen honest clients, with a data attack's poisons
in place of some of their examples, built once per client from the scenario's seed.

The client trains on the poisoned partition without knowing; only the evaluator reads the mask
of poisoned rows (for the poison counts and the precision/recall of sanitization). Attacks that
craft their poisons with a model (feature collision) craft them once, against the pre-trained
model the federation fine-tunes: the one model a supplier of training data can know.
"""

from __future__ import annotations

import torch

from fedsec.attacks import build_data_attack
from fedsec.attacks.data.base import CraftingContext, PoisonedBatch
from fedsec.federated_data import FederatedData
from fedsec.models import build_model
from fedsec.pretraining import pretrained_state
from fedsec.scenario import Scenario

SUPPLY_ROUND = -1
"""The round number of the supply's seed: before the federation's first round."""


def supplied_partition(scenario: Scenario, data: FederatedData, partition: int, seed: int) -> PoisonedBatch:
    """``partition``'s images and labels as its client holds them, with the mask of the rows the
    poisoned supply replaced (all False for a client the supply does not reach); ``seed``: the
    partition's seed in round :data:`SUPPLY_ROUND` (fedsec.client.client_seed)."""
    x, y = data.client(partition)
    supply = scenario.data_supply
    if supply is None or partition not in supply.clients(scenario.data.num_clients, scenario.seed):
        return PoisonedBatch(x, y, torch.zeros_like(y, dtype=torch.bool))
    attack = build_data_attack(supply.attack)
    generator = torch.Generator().manual_seed(seed)
    if attack.surrogate_models() == 0:
        return attack.poison(x, y, generator)
    return attack.craft(x, y, supplier_context(scenario, data, generator))


def supplied_poisons(scenario: Scenario, data: FederatedData, partition: int, seed: int) -> int:
    """Poisons in the data of ``partition``, a client the supply reaches (evaluator knowledge): an
    attack that crafts is not run again to count them (its ``poison_count``); ``seed`` as in
    :func:`supplied_partition`."""
    attack = build_data_attack(scenario.data_supply.attack)
    if attack.surrogate_models() > 0:
        return attack.poison_count(data.client(partition)[1])
    return int(supplied_partition(scenario, data, partition, seed).mask.sum())


def supplier_context(scenario: Scenario, data: FederatedData, generator: torch.Generator) -> CraftingContext:
    """What the supplier crafts with: the pre-trained model (on the CPU), the scenario's test set
    the targets come from, and ``generator``."""
    if scenario.pretraining is None:
        raise ValueError("a crafting supply needs the scenario's pretraining section")
    ds = data.dataset
    model = build_model(scenario.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std)
    model.load_state_dict(pretrained_state(scenario.pretraining, scenario.model.name, ds, scenario.seed,
                                           torch.device("cpu")))
    n = scenario.data.test_samples or len(ds.test_y)
    return CraftingContext([model], ds.test_x[:n], ds.test_y[:n], generator)


def removal_scores(removed: int, removed_poisons: int, held: int, poisons: int) -> dict[str, float | None]:
    """The evaluator's scores of a sanitization that removed ``removed`` of ``held`` rows, of which
    ``removed_poisons`` of the ``poisons`` rows: ``sanitization_precision`` (share of removed rows
    that were poisons), ``sanitization_recall`` (share of poisons removed), ``sanitization_clean_removed``
    (share of clean rows removed); None where undefined."""
    clean = held - poisons
    return {
        "sanitization_precision": removed_poisons / removed if removed else None,
        "sanitization_recall": removed_poisons / poisons if poisons else None,
        "sanitization_clean_removed": (removed - removed_poisons) / clean if clean else None,
    }
