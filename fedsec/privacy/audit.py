"""The privacy audit: the server's attacks on what it holds, after the rounds the scenario names.

Gradient inversion runs on the update the server received from one client (nothing when it
holds ciphertexts); membership inference on the global model, per example and per client; the
DP-SGD accountant after every round. The evaluator scores the attacks with data the attacker
never sees (the client's partition, membership labels).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from fedsec.audit import AUDITS, Audit, RoundView
from fedsec.data.partition import cached_partitions
from fedsec.params import load_vector
from fedsec.models import build_model
from fedsec.privacy.base import (
    AttackerData,
    GradientInversion,
    LocalTraining,
    MembershipInference,
    ObservedUpdate,
    build_attack,
)
from fedsec.privacy.config import InversionConfig, MembershipConfig, PrivacyConfig
from fedsec.privacy.dp_sgd import DPSGDConfig, PoissonSchedule, epsilon
from fedsec.privacy.metrics import label_recovery, match_images, psnr, roc_figures, ssim
from fedsec.privacy.plots import image_grid
from fedsec.results import read_jsonl, write_atomic
from fedsec.sampling import sample_clients

if TYPE_CHECKING:
    from fedsec.data.datasets import ImageDataset
    from fedsec.scenario import Scenario

RECORD_FILE = "privacy.jsonl"
IMAGE_DIR = "privacy"
FPR_BOUNDS = (0.001, 0.01)
"""False-positive rates at which membership TPR is reported (0.1% and 1%)."""


class PrivacyAudit(Audit):
    """Runs the ``privacy`` section's attacks; one record per attack and round."""

    record_file = RECORD_FILE

    def __init__(self, config: PrivacyConfig, scenario: Scenario, dataset: ImageDataset, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.seed = scenario.seed
        self.image_shape = dataset.image_shape
        self.num_classes = dataset.num_classes
        c = scenario.client
        self.training = LocalTraining(c.lr, c.momentum, c.weight_decay, c.local_epochs, c.batch_size)
        self.client_config = c
        self.clients_per_round = scenario.clients_per_round
        partitions = cached_partitions(dataset.name, dataset.train_y.numpy(), scenario.data.partitioner,
                                       scenario.data.num_clients, scenario.seed)
        self.partition_sizes = [len(p) for p in partitions]
        self.inverters: list[GradientInversion] = []
        if config.inversion is not None:
            index = torch.from_numpy(partitions[config.inversion.client])
            self.client_x, self.client_y = dataset.train_x[index], dataset.train_y[index]
            self.inverters = [cast(GradientInversion, build_attack(spec)) for spec in config.inversion.attacks]
        if config.membership is not None:
            self.membership = [cast(MembershipInference, build_attack(spec)) for spec in config.membership.attacks]
            self.candidates = _membership_candidates(dataset, partitions, config.membership.samples, scenario.seed)
            name = scenario.model.name
            self.attacker = AttackerData(
                *self.candidates.pool, self.candidates.x, self.candidates.y,
                lambda: build_model(name, dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std),
                c, device)
            self.prepare_seconds: list[float] = []

    def due(self, round_number: int, final: bool) -> bool:
        return self.config.dp_sgd is not None or _inversion_due(self.config.inversion, round_number) or (
            _membership_due(self.config.membership, round_number, final))

    def __call__(self, view: RoundView) -> list[dict[str, Any]]:
        inv, m = self.config.inversion, self.config.membership
        records = self._invert(view, inv) if inv is not None and _inversion_due(inv, view.round_number) else []
        if m is not None and _membership_due(m, view.round_number, view.final):
            records += self._infer_membership(view)
        if self.config.dp_sgd is not None:
            records.append(self._account(view, self.config.dp_sgd))
        return records

    def _invert(self, view: RoundView, inv: InversionConfig) -> list[dict[str, Any]]:
        update = view.received.get(inv.client)
        if update is None and inv.rounds is None:
            return []
        n = len(self.client_y)
        head = {"round": view.round_number, "kind": "inversion", "client": inv.client, "images": n}
        refusal = None
        if update is None:
            refusal = ("skipped", f"the server received no update from client {inv.client} in this round")
        elif not isinstance(update, torch.Tensor):
            refusal = ("not-invertible", "the server holds the update as CKKS ciphertexts and no secret key")
        elif n > inv.max_images:
            refusal = ("skipped", f"the client trained on {n} examples, more than max_images ({inv.max_images})")
        if refusal is not None:
            return [{**head, "attack": a.params.name, "status": refusal[0], "reason": refusal[1]}
                    for a in self.inverters]
        model = copy.deepcopy(view.model)
        load_vector(model, view.previous_vector.to(self.device))
        observed = ObservedUpdate(model, update.to(self.device), self.training, n, self.image_shape, self.num_classes)
        originals = self.client_x.to(self.device).float() / 255
        (view.run_dir / IMAGE_DIR).mkdir(exist_ok=True)
        records = []
        for i, attack in enumerate(self.inverters):
            generator = torch.Generator().manual_seed(_seed(self.seed, view.round_number, inv.client, i))
            started = time.perf_counter()
            result = attack.reconstruct(observed, generator)
            seconds = time.perf_counter() - started
            match = match_images(result.images, originals).to(self.device)
            matched = originals[match]
            png = Path(IMAGE_DIR) / f"round-{view.round_number:04d}-client-{inv.client}-{attack.params.name}.png"
            write_atomic(view.run_dir / png, image_grid([matched, result.images]))
            records.append({
                **head, "attack": attack.params.name, "status": "reconstructed",
                "psnr": psnr(result.images, matched).tolist(), "ssim": ssim(result.images, matched).tolist(),
                "matched": match.tolist(), "labels": self.client_y[match.cpu()].tolist(),
                "labels_recovered": result.labels.tolist(),
                "label_recovery": label_recovery(result.labels, self.client_y),
                "loss": result.loss, "seconds": seconds, "png": str(png),
            })
        return records

    def _infer_membership(self, view: RoundView) -> list[dict[str, Any]]:
        if not self.prepare_seconds:  # shadow models train once, before the first membership round
            for i, attack in enumerate(self.membership):
                started = time.perf_counter()
                attack.prepare(self.attacker, torch.Generator().manual_seed(_seed(self.seed, 0, -1, i)))
                self.prepare_seconds.append(time.perf_counter() - started)
        trained = _trained_clients(self.seed, view.round_number, len(self.partition_sizes), self.clients_per_round)
        return [{**self._score_membership(view, attack, trained), "prepare_seconds": seconds}
                for attack, seconds in zip(self.membership, self.prepare_seconds, strict=True)]

    def _score_membership(self, view: RoundView, attack: MembershipInference, trained: torch.Tensor) -> dict[str, Any]:
        c = self.candidates
        started = time.perf_counter()
        scores = attack.scores(view.model, c.x.to(self.device).float() / 255, c.y.to(self.device)).cpu()
        is_member = (c.owner >= 0) & trained[c.owner.clamp(min=0)]
        members, nonmembers = scores[is_member], scores[c.owner < 0]
        figures = roc_figures(members, nonmembers, FPR_BOUNDS)
        threshold = attack.threshold(members)
        tpr = (members >= threshold).float().mean().item()
        fpr = (nonmembers >= threshold).float().mean().item()
        return {
            "round": view.round_number, "kind": "membership", "attack": attack.params.name,
            "members": len(members), "nonmembers": len(nonmembers), "auc": figures.auc,
            **{f"tpr_at_fpr_{bound:g}": tpr_ for bound, tpr_ in figures.tpr_at_fpr.items()},
            "threshold": threshold, "tpr": tpr, "fpr": fpr, "advantage": tpr - fpr,
            **_client_level(scores, c.owner, trained), "seconds": time.perf_counter() - started,
        }

    def _account(self, view: RoundView, dp: DPSGDConfig) -> dict[str, Any]:
        """The round's DP-SGD steps per client that sent an update and each one's ε over all its
        rounds so far (earlier rounds read back from the record file, so a resumed run counts them)."""
        earlier = [r for r in read_jsonl(view.run_dir / RECORD_FILE)
                   if r["kind"] == "dp-sgd" and r["round"] < view.round_number]
        steps: Counter[int] = Counter()
        for r in earlier:
            steps.update(dict(zip(r["clients"], r["steps"], strict=True)))
        clients = sorted(view.received)
        round_steps, epsilons = [], []
        c = self.client_config
        for client in clients:
            schedule = PoissonSchedule.of(self.partition_sizes[client], c.batch_size, c.local_epochs)
            steps[client] += schedule.steps
            round_steps.append(schedule.steps)
            epsilons.append(epsilon(dp, schedule.sample_rate, steps[client]))
        worst = max([*epsilons, *(_finite(e) for r in earlier for e in r["epsilon"])], default=0.0)
        return {"round": view.round_number, "kind": "dp-sgd", "clients": clients, "steps": round_steps,
                "epsilon": epsilons, "max_epsilon": worst, "delta": dp.delta,
                "noise_multiplier": dp.noise_multiplier, "max_grad_norm": dp.max_grad_norm,
                "accountant": dp.accountant}

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Per inversion attack: mean PSNR, SSIM and label recovery over its reconstructions and
        the count of updates it could not invert; membership: per attack, the last round's figures;
        dp_sgd: the largest ε of any client at the run's end (null: infinite)."""
        out: dict[str, Any] = {}
        by_attack: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            if r["kind"] == "inversion":
                by_attack[r["attack"]].append(r)
        for name, rs in by_attack.items():
            done = [r for r in rs if r["status"] == "reconstructed"]
            entry: dict[str, Any] = {"reconstructed": len(done), "not_invertible": sum(
                r["status"] == "not-invertible" for r in rs), "skipped": sum(r["status"] == "skipped" for r in rs)}
            if done:
                # JSON holds an exact reconstruction's infinite PSNR as null
                entry["psnr"] = float(np.mean([math.inf if v is None else v for r in done for v in r["psnr"]]))
                entry["ssim"] = float(np.mean([v for r in done for v in r["ssim"]]))
                entry["label_recovery"] = float(np.mean([r["label_recovery"] for r in done]))
            out[name] = entry
        last_membership = {r["attack"]: r for r in records if r["kind"] == "membership"}
        if last_membership:
            out["membership"] = {name: {k: v for k, v in r.items() if k not in ("kind", "attack")}
                                 for name, r in last_membership.items()}
        accounted = [r for r in records if r["kind"] == "dp-sgd"]
        if accounted:
            last = accounted[-1]
            out["dp_sgd"] = {"epsilon": last["max_epsilon"], "delta": last["delta"],
                             "clients": len({c for r in accounted for c in r["clients"]}),
                             **{k: last[k] for k in ("noise_multiplier", "max_grad_norm", "accountant")}}
        return {"privacy": out} if out else {}


def _inversion_due(inv: InversionConfig | None, round_number: int) -> bool:
    return inv is not None and (inv.rounds is None or round_number in inv.rounds)


def _membership_due(m: MembershipConfig | None, round_number: int, final: bool) -> bool:
    return m is not None and (round_number in m.rounds if m.rounds is not None else final)


def _seed(seed: int, round_number: int, client: int, attack: int) -> int:
    return ((seed * 1_000_003 + round_number) * 100_003 + client) * 101 + attack


def _finite(value: float | None) -> float:
    """An ε read back from JSON, which holds an infinite one as null."""
    return math.inf if value is None else value


@dataclass(frozen=True)
class Candidates:
    """The examples membership inference is asked about, and the attacker's own data.

    ``x``/``y``: uint8 images and labels; ``owner``: the partition each was drawn from, or -1 for
    a test-split example (a non-member); ``pool``: the rest of the test split, the attacker's.
    """

    x: torch.Tensor
    y: torch.Tensor
    owner: torch.Tensor
    pool: tuple[torch.Tensor, torch.Tensor]


def _membership_candidates(
    dataset: ImageDataset, partitions: list[np.ndarray], samples: int, seed: int
) -> Candidates:
    """A seeded draw of ceil(``samples`` / clients) examples of every client's partition, and of
    ``samples`` test examples; the attacker keeps the test split's remainder."""
    rng = np.random.default_rng([seed, 7])
    per_client = math.ceil(samples / len(partitions))
    drawn = [rng.choice(p, size=min(per_client, len(p)), replace=False) for p in partitions]
    training = torch.from_numpy(np.concatenate(drawn)).long()
    owner = torch.cat([torch.full((len(d),), i) for i, d in enumerate(drawn)])
    order = torch.from_numpy(rng.permutation(len(dataset.test_y)))
    test, pool = order[:samples], order[samples:]
    return Candidates(
        torch.cat([dataset.train_x[training], dataset.test_x[test]]),
        torch.cat([dataset.train_y[training], dataset.test_y[test]]),
        torch.cat([owner, torch.full((len(test),), -1)]),
        (dataset.test_x[pool], dataset.test_y[pool]))


def _trained_clients(seed: int, round_number: int, num_clients: int, per_round: int) -> torch.Tensor:
    """(clients,) True for every client sampled in rounds 1..``round_number``."""
    trained = torch.zeros(num_clients, dtype=torch.bool)
    for r in range(1, round_number + 1):
        trained[sample_clients(seed, r, num_clients, per_round)] = True
    return trained


def _client_level(scores: torch.Tensor, owner: torch.Tensor, trained: torch.Tensor) -> dict[str, Any]:
    """Client-level membership: a client's score is the mean of its examples' scores; members are
    the clients the federation trained on, non-members the others."""
    drawn = owner >= 0
    counts = torch.bincount(owner[drawn], minlength=len(trained))
    sums = torch.zeros(len(trained), dtype=torch.float64).index_add_(0, owner[drawn], scores[drawn].double())
    has = counts > 0
    mean = sums / counts.clamp(min=1)
    inside, outside = mean[has & trained], mean[has & ~trained]
    head = {"member_clients": len(inside), "nonmember_clients": len(outside)}
    if not len(inside) or not len(outside):
        return {**head, "client_auc": None}
    figures = roc_figures(inside, outside, FPR_BOUNDS)
    return {**head, "client_auc": figures.auc,
            **{f"client_tpr_at_fpr_{bound:g}": tpr for bound, tpr in figures.tpr_at_fpr.items()}}


@AUDITS.register("privacy")
def build_privacy_audit(scenario: Scenario, dataset: ImageDataset, device: torch.device) -> PrivacyAudit | None:
    """The privacy audit of the scenario's ``privacy`` section (None without one; the scenario
    has already checked that the section fits the rest of it)."""
    config = scenario.privacy
    if config is None:
        return None
    return PrivacyAudit(config, scenario, dataset, device)
