"""Aggregation on ciphertexts: the server holds CKKS ciphertexts and a public context only.

FedAvg without defenses needs no multiplication: each sampled client encrypts
``lr * n_i / sum_j n_j * update`` (the server sends the coefficients, computed from the
example counts clients declared when they connected), and the server only adds
ciphertexts. When replies are missing the sum is rescaled by one plaintext factor (one
level). With defenses, clients send their plain update encrypted, the stages decide from
decrypted per-client scalars (each defense's ``on_scalars``), and the aggregate is a weighted
sum with plaintext coefficients (one level).

Two objects: :class:`EncryptedFederation` is the aggregation server (ciphertexts, the public
context, the key authority's ``server`` grant); :class:`EncryptedAggregation` is what the round
loop talks to: it starts the key authority's process and holds the other parties' grants (the
evaluator's, the owner's), which the server object cannot reach.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from torch import nn

from fedsec.crypto.aggregation import add, encrypted_sum, encrypted_weighted_sum
from fedsec.crypto.context import CkksParameters, Needs, ckks_parameters
from fedsec.crypto.custody import KeyCustody
from fedsec.crypto.key_authority import EMBEDDER, EVALUATOR, OWNER, SERVER, Decryptor
from fedsec.crypto.layout import CiphertextLayout
from fedsec.crypto.packing import chunk_bounds, deserialize_chunks, encrypt_vector, serialize_chunks
from fedsec.crypto.scalars import EncryptedScalars
from fedsec.crypto.whitebox import STEP_NEEDS
from fedsec.defenses import Scalar, ScalarBatch, build_pipeline, run_scalar_pipeline
from fedsec.defenses.base import normalized
from fedsec.fl.aggregation import Aggregation, Decision
from fedsec.fl.encrypted_transport import (
    HE_BREAKS_KEY,
    HE_COEFFICIENTS_KEY,
    HE_FINGERPRINT_KEY,
    HE_SLOTS_KEY,
    chunks_record,
    validate_encrypted_reply,
)
from fedsec.fl.protocol import CONFIG_RECORD, NUM_EXAMPLES_KEY, SCENARIO_KEY
from fedsec.fl.validation import RejectedReply, ValidReply
from fedsec.params import load_vector, model_vector
from fedsec.scenario import Scenario
from fedsec.watermark import WATERMARKS
from fedsec.watermark.owner import WatermarkOwner


def _scalars_needed(scenario: Scenario) -> frozenset[Scalar]:
    """The per-client scalars the scenario's defenses decide from (their ``needs()``)."""
    stages = build_pipeline([spec.model_dump() for spec in scenario.defenses]).stages
    return frozenset().union(*(stage.needs() for stage in stages))


def scalar_contributions(decided: ScalarBatch) -> torch.Tensor:
    """Each row's share of the aggregate that the stages decided from scalars, (n,): its coefficient
    times its norm, normalized, as the plaintext stages report it. Reads the squared norms, which
    a stage that declared norms or the Gram matrix has had decrypted already."""
    norms = decided.scalars.sq_norms().clamp_min(0.0).sqrt()
    return normalized(decided.final_coefficients().abs() * norms)


def _whitebox_on_ciphertexts(scenario: Scenario) -> bool:
    """Whether the scenario's watermark scheme embeds on the encrypted layer (its hook)."""
    return scenario.watermark is not None and WATERMARKS.get(scenario.watermark.scheme.name).embeds_on_ciphertexts


def operation_needs(scenario: Scenario) -> Needs:
    """Depth and rotations of a scenario's encrypted operations.

    FedAvg alone adds ciphertexts (clients encrypt their update times their coefficient): no
    level; when replies are missing, the server has the key authority refresh the sum times the
    renormalising factor instead of multiplying. A defense's weighted sum takes one level (a
    plaintext factor per row); a second one when a defense needs inner products with the global
    model (FLAME on local models: the global model sits one level down after the first
    aggregation). Any per-client scalar is a slot sum, which needs Galois keys. A FedCrypt
    watermark's homomorphic steps need three levels and rotations.
    """
    needed = _scalars_needed(scenario)
    if Scalar.GLOBAL_PRODUCTS in needed:
        depth = 2
    else:
        depth = 0 if all(spec.name == "fedavg" for spec in scenario.defenses) else 1
    needs = Needs(depth=depth, rotations=bool(needed))
    if _whitebox_on_ciphertexts(scenario):
        needs = Needs(depth=max(needs.depth, STEP_NEEDS.depth), rotations=True)
    return needs


def grant_purposes(scenario: Scenario) -> dict[str, str]:
    """Role -> purpose of every grant a scenario's run needs from the key authority."""
    purposes = {
        SERVER: "defenses: " + ", ".join(spec.name for spec in scenario.defenses),
        EVALUATOR: "evaluation of main accuracy / attack success",
    }
    if scenario.watermark is not None:
        purposes[OWNER] = "owner: watermark embedding and verification"
        if _whitebox_on_ciphertexts(scenario):
            purposes[EMBEDDER] = "white-box watermark on the encrypted target layer"
    return purposes


def grant_budgets(scenario: Scenario) -> dict[str, int]:
    """Values each scalars-only role may have decrypted per round: what the scenario's operations
    need and no more. The server, with n the clients sampled per round, for each kind of scalar
    some defense declares (each is decrypted at most once a round): the Gram matrix of the
    round's updates (n(n+1)/2 values), their squared norms (n; a stage may read them before a
    later one asks for the Gram matrix), their inner products with the global model and its
    squared norm (n + 1); the white-box embedder: T detector outputs per check."""
    n, needed = scenario.clients_per_round, _scalars_needed(scenario)
    sizes = {Scalar.GRAM: n * (n + 1) // 2, Scalar.NORMS: n, Scalar.GLOBAL_PRODUCTS: n + 1}
    budgets = {SERVER: sum(size for scalar, size in sizes.items() if scalar in needed)}
    if _whitebox_on_ciphertexts(scenario):
        budgets[EMBEDDER] = scenario.watermark.scheme.bits * (scenario.watermark.embedding.max_steps + 2)
    return budgets


class EncryptedFederation:
    """Server-side encrypted global model and aggregation of one run.

    Parameters
    ----------
    scenario : Scenario
        The run's scenario (defenses, server learning rate).
    params : CkksParameters
        The context's parameters (:func:`operation_needs` resolved against the encryption settings).
    initial : Tensor
        (d,) the initial global model (a public random initialisation), encrypted at once.
    public_context : ts.Context
        The run's context without the secret key.
    fingerprint : str
        The key set's public fingerprint, sent to clients with every train message.
    decryptor : Decryptor
        The key authority's ``server`` grant: decrypts the per-client scalars defenses need.
    breaks : sequence of int
        Offsets where a new ciphertext starts (a watermark's target layer gets its own).
    """

    def __init__(self, scenario: Scenario, params: CkksParameters, initial: torch.Tensor,
                 public_context: ts.Context, fingerprint: str, decryptor: Decryptor, breaks: Sequence[int] = ()) -> None:
        if public_context.is_private():
            raise ValueError("the aggregation server takes the public context only")
        self.pipeline = build_pipeline([spec.model_dump() for spec in scenario.defenses])
        self.stages = self.pipeline.stages
        self.summed = all(stage.name == "fedavg" for stage in self.stages)
        self.rejects = self.pipeline.rejects
        reads_norms = any(stage.needs() & {Scalar.NORMS, Scalar.GRAM} for stage in self.stages)
        self.contributions_unavailable = None if reads_norms else (
            "under CKKS the defenses decrypt no update norms, and a contribution is a coefficient times a norm")
        self.lr = scenario.server.lr
        self.dimension = initial.numel()
        self.params = params
        self.context = public_context
        self.fingerprint = fingerprint
        self._decryptor = decryptor
        self.breaks = tuple(breaks)
        self.bounds = chunk_bounds(self.dimension, self.params.slots, self.breaks)
        self.global_chunks = encrypt_vector(self.context, initial, self.params.slots, self.breaks)
        self.layout = CiphertextLayout(
            self.bounds, 2 * max(len(c.serialize()) for c in self.global_chunks),
            2.0**self.params.scale_bits, len(self.params.coeff_mod_bit_sizes) - 1,
        )
        self.example_counts: dict[int, int] = {}
        self._coefficients: dict[int, float] = {}
        self._decrypt_s = 0.0

    # -- what goes to the clients -------------------------------------------------------------

    def train_config(self, partitions: Sequence[int]) -> dict[str, Any]:
        """Config entries of a train message: key fingerprint, layout, each sampled client's coefficient."""
        if self.summed:
            total = sum(self.example_counts[p] for p in partitions)
            self._coefficients = {p: self.lr * self.example_counts[p] / total for p in partitions}
        else:
            self._coefficients = {p: 1.0 for p in partitions}
        return {
            HE_FINGERPRINT_KEY: self.fingerprint,
            HE_SLOTS_KEY: self.params.slots,
            HE_BREAKS_KEY: list(self.breaks),
            HE_COEFFICIENTS_KEY: [self._coefficients[p] for p in partitions],
        }

    def model_record(self) -> ArrayRecord:
        """The encrypted global model as a record."""
        return chunks_record(self.global_chunks)

    # -- what comes back ----------------------------------------------------------------------

    def validate(self, reply: Message, partition: int, max_examples: int | None = None) -> ValidReply | RejectedReply:
        """Checks of an encrypted reply (see fedsec.fl.encrypted_transport.validate_encrypted_reply)."""
        return validate_encrypted_reply(reply, partition, self.context, self.layout, max_examples)

    def _server_decrypt(self, ciphertexts: list[ts.CKKSVector], what: str) -> list[np.ndarray]:
        started = time.perf_counter()
        try:
            return self._decryptor.decrypt(ciphertexts, what)
        finally:
            self._decrypt_s += time.perf_counter() - started

    def aggregate(self, valid: Sequence[ValidReply], generator: torch.Generator | None) -> Decision:
        """Fold the round's encrypted updates into the encrypted global model."""
        self._decrypt_s = 0.0
        n = len(valid)
        if self.summed:
            total = encrypted_sum([r.update for r in valid])
            sent = sum(self._coefficients.values())
            received = sum(self._coefficients[r.partition] for r in valid)
            if abs(received - sent) > 1e-12 * sent:  # some replies missing: renormalise
                total = self._decryptor.refresh(
                    total, f"sum of {n} updates, renormalised for missing replies", sent / received)
            self.global_chunks = add(self.global_chunks, total)
            return Decision(accepted=torch.ones(n, dtype=torch.bool))
        weights = torch.tensor([float(r.num_examples) for r in valid])
        scalars = EncryptedScalars([r.update for r in valid], self._server_decrypt, self.global_chunks)
        decided = run_scalar_pipeline(self.stages, scalars, weights, self.dimension, generator)
        coefficients = (decided.final_coefficients() * self.lr).tolist()
        if any(c != 0.0 for c in coefficients):
            self.global_chunks = add(self.global_chunks, encrypted_weighted_sum([r.update for r in valid], coefficients))
        if decided.noise is not None:
            noise = (decided.noise.double() * self.lr).numpy()
            self.global_chunks = [
                chunk + noise[a:b].tolist() for chunk, (a, b) in zip(self.global_chunks, self.bounds, strict=True)
            ]
        contributions = None if self.contributions_unavailable else scalar_contributions(decided)
        return Decision(accepted=decided.accepted, scores=decided.scores, info=decided.info,
                        contributions=contributions)

    # -- costs -------------------------------------------------------------------------

    def round_costs(self, valid: Sequence[ValidReply], bytes_up: int) -> dict[str, Any]:
        """Encryption costs of the last round for its metrics record."""
        def mean(key: str) -> float | None:
            values = [r.metrics[key] for r in valid if key in r.metrics]
            return float(np.mean(values)) if values else None

        return {
            "encrypt_s": mean("encrypt_s"),
            "client_decrypt_s": mean("decrypt_s"),
            "decrypt_s": self._decrypt_s,
            "ciphertexts": len(self.global_chunks),
            "bytes_per_param": bytes_up / (len(valid) * self.dimension) if valid else None,
        }

    # -- the owner (a key holder): black-box watermark on the decrypted global model -----------

    def decrypted_with(self, key: Decryptor, what: str) -> torch.Tensor:
        """The global model decrypted through a key holder's grant (the evaluator's, the owner's)."""
        values = key.decrypt(self.global_chunks, what)
        return torch.from_numpy(np.concatenate(values).astype(np.float32))

    def owner_replace(self, vector: torch.Tensor) -> None:
        """The owner's (watermarked) global model, re-encrypted before the next broadcast."""
        self.global_chunks = encrypt_vector(self.context, vector, self.params.slots, self.breaks)

    # -- checkpoints: the server keeps ciphertexts only ------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The encrypted global model as ciphertext bytes (what the server's checkpoint holds)."""
        return {"ciphertexts": serialize_chunks(self.global_chunks), "defenses": self.pipeline.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (needs the same keys: the authority reuses them)."""
        self.global_chunks = deserialize_chunks(self.context, state["ciphertexts"])
        self.pipeline.load_state_dict(state["defenses"])

    # -- the owner's white-box embedder: works on one encrypted layer, never decrypts it -------

    def layer_ciphertext(self, start: int, stop: int) -> ts.CKKSVector:
        """The ciphertext holding exactly the layer ``[start, stop)`` of the model vector; ValueError
        when the layer does not fit one ciphertext."""
        index = self._chunk_at(start)
        if self.bounds[index] != (start, stop):
            raise ValueError(f"the watermark's layer has {stop - start} values, more than one ciphertext holds "
                             f"({self.params.slots}); choose a smaller layer or a larger poly_modulus_degree")
        return self.global_chunks[index]

    def replace_layer_ciphertext(self, start: int, layer: ts.CKKSVector) -> None:
        """Put the (watermarked) layer ciphertext back in place."""
        index = self._chunk_at(start)
        if layer.size() != self.global_chunks[index].size():
            raise ValueError(f"layer ciphertext of {layer.size()} values, expected {self.global_chunks[index].size()}")
        self.global_chunks[index] = layer

    def _chunk_at(self, start: int) -> int:
        starts = [a for a, _ in self.bounds]
        if start not in starts:
            raise ValueError(f"no ciphertext starts at offset {start} (breaks: {list(self.breaks)})")
        return starts.index(start)


class EncryptedAggregation(Aggregation):
    """The round loop's view of an encrypted federation: the server object plus the key holders.

    Starts the key authority's process (``run_dir/keys``, ``decryptions.jsonl``), hands the
    ``server`` grant to the :class:`EncryptedFederation` it builds and keeps the evaluator's and the
    owner's grants to itself.

    Parameters
    ----------
    scenario : Scenario
        The run's scenario.
    run_dir : Path
        The run directory.
    initial : Tensor
        (d,) the initial global model.
    breaks : sequence of int
        Offsets where a new ciphertext starts (a white-box watermark's target layer).
    expected_fingerprint : str or None
        A resumed run's key fingerprint (from its checkpoint): the kept keys must match it.
    """

    def __init__(self, scenario: Scenario, run_dir: Path, initial: torch.Tensor, breaks: Sequence[int] = (),
                 expected_fingerprint: str | None = None) -> None:
        self.scenario_json = scenario.model_dump_json()
        params = ckks_parameters(scenario.encryption, operation_needs(scenario))
        purposes = grant_purposes(scenario)
        self.custody = KeyCustody(params, run_dir, initial.numel(), purposes, grant_budgets(scenario),
                                  expected_fingerprint=expected_fingerprint)
        self.key_fingerprint = self.custody.fingerprint
        grants = {role: self.custody.take(role) for role in purposes}
        self._evaluator, self._owner, self._embedder = grants[EVALUATOR], grants.get(OWNER), grants.get(EMBEDDER)
        self.server = EncryptedFederation(scenario, params, initial, self.custody.public_context,
                                          self.custody.fingerprint, grants[SERVER], breaks)
        self.pipeline = self.server.pipeline
        self.rejects = self.server.rejects
        self.contributions_unavailable = self.server.contributions_unavailable
        self.hears_nodes = self.server.summed

    def query_content(self) -> RecordDict:
        """The discovery query carries the scenario, so that clients declare their example counts
        (FedAvg's coefficients are sent before training)."""
        return RecordDict({CONFIG_RECORD: ConfigRecord({SCENARIO_KEY: self.scenario_json})})

    def node_joined(self, partition: int, metrics: MetricRecord) -> None:
        """Remember the example count the node declared."""
        self.server.example_counts[partition] = int(metrics[NUM_EXAMPLES_KEY])

    def start_round(self, round_number: int) -> None:
        """Refill the scalars-only roles' per-round decryption budgets."""
        self.custody.new_round()

    def broadcast(self, partitions: Sequence[int]) -> tuple[ArrayRecord, dict[str, Any]]:
        """The encrypted global model; key fingerprint, layout and coefficients in the config."""
        return self.server.model_record(), self.server.train_config(partitions)

    def validate(self, reply: Message, partition: int, max_examples: int) -> ValidReply | RejectedReply:
        """See fedsec.fl.encrypted_transport.validate_encrypted_reply."""
        return self.server.validate(reply, partition, max_examples)

    def aggregate(self, round_number: int, valid: Sequence[ValidReply], senders: Sequence[int],
                  generator: torch.Generator) -> Decision:
        """The server folds the encrypted updates in (senders: unused, no encrypted stage keeps history)."""
        return self.server.aggregate(valid, generator)

    def evaluator_view(self) -> torch.Tensor:
        """The global model decrypted through the evaluator's grant (logged)."""
        return self.server.decrypted_with(self._evaluator, "global model")

    def owner_step(self, owner: WatermarkOwner, round_number: int, model: nn.Module) -> dict[str, float]:
        """FedCrypt-style schemes work on the encrypted target layer through the embedder's grant;
        the others on the global model decrypted through the owner's grant, re-encrypted after."""
        if owner.embeds_on_ciphertexts:
            start, stop = owner.ciphertext_breaks(model)
            layer, record = owner.after_encrypted_aggregation(
                round_number, self.server.layer_ciphertext(start, stop), self._embedder)
            self.server.replace_layer_ciphertext(start, layer)
            return record
        load_vector(model, self.server.decrypted_with(self._owner, "global model"))
        record = owner.after_aggregation(round_number, model)
        self.server.owner_replace(model_vector(model))
        return record

    def round_costs(self, valid: Sequence[ValidReply], bytes_up: int) -> dict[str, Any]:
        """Encryption costs: client encryption and decryption seconds, the server's decryption
        requests, ciphertexts, bytes per parameter."""
        return self.server.round_costs(valid, bytes_up)

    def state_dict(self) -> dict[str, Any]:
        """Ciphertexts only: the checkpoint holds no plaintext model."""
        return self.server.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.server.load_state_dict(state)

    def close(self) -> None:
        """Stop the key authority's process."""
        self.custody.close()
