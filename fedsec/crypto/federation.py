"""The aggregation server's encrypted state and round step: it holds ciphertexts and a public context.

FedAvg without defenses needs no multiplication: each sampled client encrypts
``lr * n_i / sum_j n_j * update`` (the server sends the coefficients, computed from the
example counts clients declared when they connected), and the server only adds
ciphertexts. When replies are missing the sum is rescaled by one plaintext factor (one
level). With defenses, clients send their plain update encrypted, the stages decide from
decrypted per-client scalars (fedsec.crypto.defenses), and the aggregate is a weighted sum
with plaintext coefficients (one level).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tenseal as ts
import torch
from flwr.app import ArrayRecord, Message

from fedsec.crypto.aggregation import add, encrypted_sum, encrypted_weighted_sum
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.defenses import EncryptedScalars, run_encrypted_pipeline
from fedsec.crypto.key_authority import EMBEDDER, EVALUATOR, OWNER, SERVER, Decryptor
from fedsec.crypto.packing import chunk_bounds, deserialize_chunks, encrypt_vector, serialize_chunks
from fedsec.crypto.transport import (
    HE_BREAKS_KEY,
    HE_COEFFICIENTS_KEY,
    HE_FINGERPRINT_KEY,
    HE_SLOTS_KEY,
    CiphertextLayout,
    EncryptedReply,
    chunks_record,
    validate_encrypted_reply,
)
from fedsec.crypto.whitebox import STEP_NEEDS
from fedsec.defenses import build_pipeline
from fedsec.fl.validation import RejectedReply
from fedsec.scenario import Scenario



def operation_needs(scenario: Scenario) -> Needs:
    """Depth and rotations of a scenario's encrypted operations.

    One level always (a plaintext factor on the sum or the weighted sum); a second one when
    FLAME compares local models (inner products with the global model, which sits one level
    down after the first aggregation). Slot sums (per-client scalars) need Galois keys. A
    FedCrypt watermark's homomorphic steps need three levels and rotations.
    """
    names = {spec.name for spec in scenario.defenses}
    models = any(getattr(spec, "distance", None) == "models" for spec in scenario.defenses if spec.name == "flame")
    needs = Needs(depth=2 if models else 1, rotations=bool(names - {"fedavg", "dp-noise"}))
    if scenario.watermark is not None and scenario.watermark.scheme.name == "fedcrypt":
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
        if scenario.watermark.scheme.name == "fedcrypt":
            purposes[EMBEDDER] = "white-box watermark on the encrypted target layer"
    return purposes


def grant_budgets(scenario: Scenario) -> dict[str, int]:
    """Values each scalars-only role may have decrypted per round: what the scenario's operations
    need and no more. The server: the Gram matrix of the round's updates (n(n+1)/2 values, norms
    included), their inner products with the global model (n) and its squared norm (1), with n
    the clients sampled per round; the white-box embedder: T detector outputs per check."""
    n = scenario.clients_per_round
    budgets = {SERVER: n * (n + 1) // 2 + n + 1}
    if scenario.watermark is not None and scenario.watermark.scheme.name == "fedcrypt":
        budgets[EMBEDDER] = scenario.watermark.scheme.bits * (scenario.watermark.embedding.max_steps + 2)
    return budgets


@dataclass(frozen=True)
class EncryptedDecision:
    """What the encrypted pipeline decided in a round (the fields the round record reads)."""

    accepted: torch.Tensor
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)


class EncryptedFederation:
    """Server-side encrypted global model and aggregation of one run.

    Parameters
    ----------
    scenario : Scenario
        The run's scenario (defenses, server learning rate, encryption settings).
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

    def __init__(self, scenario: Scenario, initial: torch.Tensor, public_context: ts.Context, fingerprint: str,
                 decryptor: Decryptor, breaks: Sequence[int] = ()) -> None:
        if public_context.is_private():
            raise ValueError("the aggregation server takes the public context only")
        self.stages = build_pipeline([spec.model_dump() for spec in scenario.defenses]).stages
        self.summed = all(stage.name == "fedavg" for stage in self.stages)
        self.lr = scenario.server.lr
        self.seed = scenario.seed
        self.dimension = initial.numel()
        self.params = ckks_parameters(scenario.encryption, operation_needs(scenario))
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

    def validate(self, reply: Message, partition: int, max_examples: int | None = None) -> EncryptedReply | RejectedReply:
        """Checks of an encrypted reply (see transport.validate_encrypted_reply)."""
        return validate_encrypted_reply(reply, partition, self.context, self.layout, max_examples)

    def _server_decrypt(self, ciphertexts: list[ts.CKKSVector], what: str) -> list[np.ndarray]:
        started = time.perf_counter()
        try:
            return self._decryptor.decrypt(ciphertexts, what)
        finally:
            self._decrypt_s += time.perf_counter() - started

    def aggregate(self, valid: Sequence[EncryptedReply], generator: torch.Generator | None) -> EncryptedDecision:
        """Fold the round's encrypted updates into the encrypted global model."""
        self._decrypt_s = 0.0
        n = len(valid)
        if self.summed:
            total = encrypted_sum([r.chunks for r in valid])
            sent = sum(self._coefficients.values())
            received = sum(self._coefficients[r.partition] for r in valid)
            if abs(received - sent) > 1e-12 * sent:  # some replies missing: renormalise (one level)
                total = [chunk * (sent / received) for chunk in total]
            self.global_chunks = add(self.global_chunks, total)
            return EncryptedDecision(accepted=torch.ones(n, dtype=torch.bool))
        weights = torch.tensor([float(r.num_examples) for r in valid])
        scalars = EncryptedScalars([r.chunks for r in valid], self._server_decrypt, self.global_chunks)
        decided = run_encrypted_pipeline(self.stages, scalars, weights, self.dimension, generator)
        coefficients = (decided.final_coefficients() * self.lr).tolist()
        if any(c != 0.0 for c in coefficients):
            self.global_chunks = add(self.global_chunks, encrypted_weighted_sum([r.chunks for r in valid], coefficients))
        if decided.noise is not None:
            noise = (decided.noise.double() * self.lr).numpy()
            self.global_chunks = [
                chunk + noise[a:b].tolist() for chunk, (a, b) in zip(self.global_chunks, self.bounds, strict=True)
            ]
        return EncryptedDecision(accepted=decided.accepted, scores=decided.scores, info=decided.info)

    # -- costs -------------------------------------------------------------------------

    def round_costs(self, valid: Sequence[EncryptedReply], bytes_up: int) -> dict[str, Any]:
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
        return {"ciphertexts": serialize_chunks(self.global_chunks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (needs the same keys: the authority reuses them)."""
        self.global_chunks = deserialize_chunks(self.context, state["ciphertexts"])

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
