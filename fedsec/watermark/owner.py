"""The model owner: holds the watermark secrets, embeds after aggregation, verifies every round.

Key and data. The owner's 256-bit key comes from ``os.urandom`` (``key: random``) or from the
scenario seed (``key: seeded``: reproducible, but anyone who reads the scenario can derive it).
It is written to ``<run>/owner/key`` and reused when that file exists. Everything else derives
from the key: a key-seeded permutation of the training set gives the owner's clean set (the
first ``owner_samples`` images) and, after it, the natural images schemes turn into triggers.
(Clients' partitions also cover the training set; the owner is a participant holding some of
the same data distribution, never the test set the evaluator scores on.)

Secrets. ``owner/`` is created with mode 0o700; ``key``, ``secrets.pt`` (the scheme's tensors)
and ``public.json`` (commitments, when the scheme has any) are written with mode 0o600. Round
records get statistics only.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

import tenseal as ts
import torch
from torch import nn

from fedsec.crypto.key_authority import Decryptor
from fedsec.data.datasets import ImageDataset
from fedsec.models import build_model
from fedsec.params import vector_slice
from fedsec.results import write_atomic
from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    Watermark,
    key_generator,
    key_seed,
)
from fedsec.watermark.config import WatermarkConfig
from fedsec.watermark.fingerprints import Fingerprints, Trace
from fedsec.watermark.plots import plot_watermark
from fedsec.watermark.stats import Verdict
from fedsec.watermark.tensors import as_input

OWNER_DIR = "owner"
KEY_FILE = "key"
SECRETS_FILE = "secrets.pt"
PUBLIC_FILE = "public.json"
PLOT_FILE = "watermark.png"
SECRET_MODE, DIRECTORY_MODE = 0o600, 0o700


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Outputs(Protocol):
    @property
    def plots(self) -> bool: ...


class _Clients(Protocol):
    @property
    def num_clients(self) -> int: ...


class OwnedRun(Protocol):
    """What the owner reads of its run's scenario (the scenario object has all of it)."""

    @property
    def name(self) -> str:
        """Run name, the label of the final plot."""

    @property
    def seed(self) -> int:
        """Scenario seed, from which ``key: seeded`` derives the owner's key."""

    @property
    def rounds(self) -> int:
        """Rounds of the run; the plot is drawn after the last."""

    @property
    def model(self) -> _Named:
        """The model section: ``name`` is the architecture."""

    @property
    def data(self) -> _Clients:
        """The data section: ``num_clients`` is the number of clients a fingerprint can name."""

    @property
    def output(self) -> _Outputs:
        """The output section: ``plots`` says whether to draw the plot."""


def build_scheme(config: WatermarkConfig, num_classes: int) -> Watermark:
    """The scheme object the config names."""
    return WATERMARKS.get(config.scheme.name)(config.scheme, num_classes)


def template_model(scenario: OwnedRun, dataset: ImageDataset) -> nn.Module:
    """A CPU model of the scenario's architecture (weights are irrelevant; the global random state
    is left as it was, so a watermarked run trains like the same run without the watermark)."""
    with torch.random.fork_rng(devices=[]):
        return build_model(scenario.model.name, dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std)


def _owner_key(config: WatermarkConfig, seed: int, owner_dir: Path) -> bytes:
    path = owner_dir / KEY_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if config.key == "seeded":
        key = hashlib.sha256(b"fedsec-owner-key\x00" + str(seed).encode()).digest()
    else:
        key = os.urandom(32)
    write_atomic(path, key.hex() + "\n", mode=SECRET_MODE)
    return key


class WatermarkOwner:
    """The only watermark object the server calls.

    Parameters
    ----------
    config : WatermarkConfig
        The scenario's watermark section.
    scenario : OwnedRun
        The run's scenario (seed, architecture, rounds, name, plots).
    dataset : ImageDataset
        The task's data; the owner samples its clean set and natural trigger images from ``train_x``.
    device : torch.device
        Where the owner's embedding runs.
    owner_dir : Path
        The run directory's owner folder; secrets are read from it when present, else drawn and written.
    """

    def __init__(self, config: WatermarkConfig, scenario: OwnedRun, dataset: ImageDataset,
                 device: torch.device, owner_dir: Path) -> None:
        self.config, self.scenario, self.device, self.owner_dir = config, scenario, device, owner_dir
        owner_dir.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        os.chmod(owner_dir, DIRECTORY_MODE)
        self.key = _owner_key(config, scenario.seed, owner_dir)
        self.scheme = build_scheme(config, dataset.num_classes)
        order = torch.randperm(len(dataset.train_y), generator=key_generator(self.key, "owner-data"))
        clean, rest = order[: config.owner_samples], order[config.owner_samples :]
        self.clean_x, self.clean_y = dataset.train_x[clean].to(device), dataset.train_y[clean].to(device)
        secrets_path = owner_dir / SECRETS_FILE
        if secrets_path.exists():
            self.secrets: Secrets = torch.load(secrets_path, map_location="cpu", weights_only=True)
        else:
            pool = OwnerPool(dataset.train_x[rest], dataset.train_y[rest])
            self.secrets = self.scheme.create(self.key, pool, template_model(scenario, dataset))
            buffer = io.BytesIO()
            torch.save(self.secrets, buffer)
            write_atomic(secrets_path, buffer.getvalue(), mode=SECRET_MODE)
            public = self.scheme.public(self.secrets)
            if public:
                write_atomic(owner_dir / PUBLIC_FILE, json.dumps(public, indent=1) + "\n", mode=SECRET_MODE)
        self.secrets = {k: v.to(device) for k, v in self.secrets.items()}
        self.fingerprints = None
        if config.fingerprints is not None:
            template = template_model(scenario, dataset)
            self.fingerprints = Fingerprints(config.fingerprints, self.key, scenario.data.num_clients, template,
                                             avoid=self.scheme.marked_layer(template))
        self.history: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs besides the files in ``owner/``: the per-round statistics
        the final plot draws."""
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.history = list(state["history"])

    def verify(self, model: nn.Module) -> Verdict:
        """The verdict on ``model`` under the scenario's false-alarm bound."""
        return self.scheme.verify(model, self.secrets, self.config.false_alarm)

    def copy_for(self, model: nn.Module, client: int) -> nn.Module:
        """The model client ``client`` receives: ``model`` itself, or its fingerprinted copy when the
        scenario fingerprints clients (``model`` is left unchanged)."""
        return model if self.fingerprints is None else self.fingerprints.copy_for(model, client)

    def trace(self, model: nn.Module) -> Trace:
        """The client whose fingerprint ``model`` carries (ValueError when the run has no fingerprints)."""
        if self.fingerprints is None:
            raise ValueError("the scenario has no watermark.fingerprints section: no client can be traced")
        return self.fingerprints.trace(model)

    @property
    def embeds_on_ciphertexts(self) -> bool:
        """Whether the scheme embeds into an encrypted layer (FedCrypt) rather than a decrypted model."""
        return self.scheme.embeds_on_ciphertexts

    def ciphertext_breaks(self, model: nn.Module) -> tuple[int, ...]:
        """Offsets in the model vector where an encrypted layout must start a new ciphertext, so
        that the layer the scheme marks on ciphertexts is one ciphertext of its own."""
        layer = self.scheme.ciphertext_layer(model)
        if layer is None:
            return ()
        where = vector_slice(model, layer)
        return where.start, where.stop

    def after_encrypted_aggregation(self, round_number: int, layer: ts.CKKSVector,
                                    key: Decryptor) -> tuple[ts.CKKSVector, dict[str, float]]:
        """:meth:`after_aggregation` on the encrypted target layer, with the public context only:
        homomorphic embedding steps and a verification that decrypts the detector outputs alone
        (``key``: the key authority's embedder grant).
        Returns the new layer ciphertext and the round-record fields."""
        started = time.perf_counter()
        embedded = self.config.schedule.active(round_number)
        layer, steps, verdict = self.scheme.embed_encrypted(
            layer, self.secrets, key, self.config.embedding if embedded else None, self.config.false_alarm)
        return layer, self._record(round_number, embedded, steps, verdict, started)

    def after_aggregation(self, round_number: int, model: nn.Module) -> dict[str, float]:
        """Embed when the schedule says so (in place on ``model``, which holds the new global
        weights), then verify. Returns round-record fields: ``wm_embedded`` (0/1), ``wm_steps``,
        ``wm_s`` (seconds), ``wm_<statistic>``, ``wm_p_value``, ``wm_bits``, ``wm_verified`` (0/1)."""
        started = time.perf_counter()
        embedded = self.config.schedule.active(round_number)
        ratio = self.config.embedding.rollback_loss_ratio
        steps, rolled_back = 0, False
        if embedded:
            before = ({k: v.clone() for k, v in model.state_dict().items()}, self.clean_loss(model)) if ratio else None
            generator = torch.Generator().manual_seed(key_seed(self.key, f"embed-{round_number}"))
            steps = self.scheme.embed(model, self.secrets, self.clean_x, self.clean_y,
                                      self.config.embedding, generator)
            if before is not None and self.diverged(model, before[1], ratio):
                model.load_state_dict(before[0])
                rolled_back = True
        record = self._record(round_number, embedded, steps, self.verify(model), started)
        return record if ratio is None else {**record, "wm_rolled_back": int(rolled_back)}

    def clean_loss(self, model: nn.Module) -> float:
        """Mean cross-entropy of ``model`` on the owner's clean images."""
        model.eval()
        with torch.no_grad():
            total = sum(nn.functional.cross_entropy(model(as_input(x, self.device)), y, reduction="sum").item()
                        for x, y in zip(self.clean_x.split(500), self.clean_y.split(500), strict=True))
        return total / len(self.clean_y)

    def diverged(self, model: nn.Module, loss_before: float, ratio: float) -> bool:
        """Whether an embedding broke ``model``: weights that are not finite, or a clean loss that is not
        finite or above ``ratio`` times ``loss_before``."""
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return True
        loss = self.clean_loss(model)
        return not math.isfinite(loss) or loss > ratio * loss_before

    def _record(self, round_number: int, embedded: bool, steps: int, verdict: Verdict, started: float) -> dict[str, float]:
        record = {"wm_embedded": int(embedded), "wm_steps": steps, **verdict.record(),
                  "wm_s": time.perf_counter() - started}
        self.history.append({"round": round_number, **record})
        if round_number == self.scenario.rounds and self.scenario.output.plots:
            plot_watermark({self.scenario.name: self.history}, self.owner_dir.parent / PLOT_FILE,
                           self.config.false_alarm)
        return record
