"""The privacy audit: the server's attacks on what it holds, after the rounds the scenario names.

Gradient inversion runs on the update the server received from one client (nothing when it
holds ciphertexts); membership inference on the global model. The evaluator scores both with
data the attacker never sees (the client's partition, membership labels).
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from fedsec.audit import AUDITS, Audit, RoundView
from fedsec.data.partition import cached_partitions
from fedsec.params import load_vector
from fedsec.privacy.base import (
    GradientInversion,
    LocalTraining,
    MembershipInference,
    ObservedUpdate,
    build_attack,
)
from fedsec.privacy.config import InversionConfig, MembershipConfig, PrivacyConfig
from fedsec.privacy.metrics import label_recovery, match_images, psnr, roc_figures, ssim
from fedsec.privacy.plots import image_grid
from fedsec.results import write_atomic

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
        partitions = cached_partitions(dataset.name, dataset.train_y.numpy(), scenario.data.partitioner,
                                       scenario.data.num_clients, scenario.seed)
        self.inverters: list[GradientInversion] = []
        if config.inversion is not None:
            index = torch.from_numpy(partitions[config.inversion.client])
            self.client_x, self.client_y = dataset.train_x[index], dataset.train_y[index]
            self.inverters = [cast(GradientInversion, build_attack(spec)) for spec in config.inversion.attacks]
        if config.membership is not None:
            self.membership = cast(MembershipInference, build_attack(config.membership.attack))
            self.member_set, self.nonmember_set = _membership_sets(
                dataset, np.concatenate(partitions), config.membership.samples, scenario.seed)

    def due(self, round_number: int, final: bool) -> bool:
        return _inversion_due(self.config.inversion, round_number) or _membership_due(
            self.config.membership, round_number, final)

    def __call__(self, view: RoundView) -> list[dict[str, Any]]:
        inv, m = self.config.inversion, self.config.membership
        records = self._invert(view, inv) if inv is not None and _inversion_due(inv, view.round_number) else []
        if m is not None and _membership_due(m, view.round_number, view.final):
            records.append(self._infer_membership(view, m))
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

    def _infer_membership(self, view: RoundView, m: MembershipConfig) -> dict[str, Any]:
        (mx, my), (nx, ny) = self.member_set, self.nonmember_set
        model = view.model
        members = self.membership.scores(model, mx.to(self.device).float() / 255, my.to(self.device))
        nonmembers = self.membership.scores(model, nx.to(self.device).float() / 255, ny.to(self.device))
        figures = roc_figures(members, nonmembers, FPR_BOUNDS)
        threshold = self.membership.threshold(members)
        tpr = (members >= threshold).float().mean().item()
        fpr = (nonmembers >= threshold).float().mean().item()
        return {
            "round": view.round_number, "kind": "membership", "attack": m.attack.name,
            "members": len(my), "nonmembers": len(ny), "auc": figures.auc,
            **{f"tpr_at_fpr_{bound:g}": tpr_ for bound, tpr_ in figures.tpr_at_fpr.items()},
            "threshold": threshold, "tpr": tpr, "fpr": fpr, "advantage": tpr - fpr,
        }

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Per inversion attack: mean PSNR, SSIM and label recovery over its reconstructions and
        the count of updates it could not invert; membership: the last round's figures."""
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
        membership = [r for r in records if r["kind"] == "membership"]
        if membership:
            last = membership[-1]
            out["membership"] = {k: last[k] for k in last if k not in ("kind",)}
        return {"privacy": out} if out else {}


def _inversion_due(inv: InversionConfig | None, round_number: int) -> bool:
    return inv is not None and (inv.rounds is None or round_number in inv.rounds)


def _membership_due(m: MembershipConfig | None, round_number: int, final: bool) -> bool:
    return m is not None and (round_number in m.rounds if m.rounds is not None else final)


def _seed(seed: int, round_number: int, client: int, attack: int) -> int:
    return ((seed * 1_000_003 + round_number) * 100_003 + client) * 101 + attack


def _membership_sets(
    dataset: ImageDataset, training: np.ndarray, samples: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A seeded draw of ``samples`` training examples held by clients and as many test examples."""
    rng = np.random.default_rng([seed, 7])
    members = torch.from_numpy(rng.choice(training, size=min(samples, len(training)), replace=False))
    test = len(dataset.test_y)
    nonmembers = torch.from_numpy(rng.choice(test, size=min(samples, test), replace=False))
    return ((dataset.train_x[members], dataset.train_y[members]),
            (dataset.test_x[nonmembers], dataset.test_y[nonmembers]))


@AUDITS.register("privacy")
def build_privacy_audit(scenario: Scenario, dataset: ImageDataset, device: torch.device) -> PrivacyAudit | None:
    """The privacy audit of the scenario's ``privacy`` section (None without one; the scenario
    has already checked that the section fits the rest of it)."""
    config = scenario.privacy
    if config is None:
        return None
    return PrivacyAudit(config, scenario, dataset, device)
