"""Per-client fingerprints: trace a leaked copy of the global model to the client that received it.

After FedTracker (Shao et al., IEEE TDSC 2024): the server sends client k its own copy of the
global model, whose marked weight carries T bits b_k, read as ``step(X_k·w̄)`` with w̄ that
weight's mean filter and X_k a (T, M) Gaussian projection, as in Uchida's scheme
(:mod:`.uchida`). X_k and b_k derive from the owner's key and k, so the server stores nothing per
client. FedTracker marks the normalisation layers' weights; fedsec's models have none but
``resnet18``, so the default weight is the one with the longest mean filter (``cnn``: the hidden
linear layer, away from the last convolution that ``uchida`` marks by default).

Embedding asks every bit to sit on its side with a margin, (2b_k − 1) ⊙ X_k·w̄ ≥ margin·|w̄|,
where |w̄| (of the model before fingerprinting) is the standard deviation of one Gaussian
projection of w̄. FedTracker descends a hinge loss on this condition; as it is linear in w̄, the
least-norm change that meets it is one least-squares solve: bits short of the margin move to it,
the others keep their projection, and the change of w̄ is added to every output channel.

Tracing reads every client's bits with its own projection and accuses the client with the most
matches, if it has at least m of T. For a model that is not client j's copy, b_j is drawn
independently of the model, so j's matches are Binomial(T, 1/2) whatever the model; m is the
fewest matches with P[Binomial(T, 1/2) ≥ m] ≤ false_accusation / N, so by the union bound over
the N clients a trace accuses someone other than the leaker (or anyone, for a copy that carries
no fingerprint) with probability at most ``false_accusation``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from fedsec.watermark.base import key_generator
from fedsec.watermark.layers import marked_weight
from fedsec.watermark.stats import required_matches
from fedsec.watermark.tensors import Secrets
from fedsec.watermark.uchida import draw_projection, mean_filter, projected


class FingerprintParams(BaseModel):
    """The server's fingerprinting settings: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bits: int = Field(128, ge=1, description="Fingerprint length T in bits per client.")
    layer: str | None = Field(
        None, description="Parameter name of the fingerprinted weight (default: the weight with the longest mean "
        "filter, i.e. the most input values per output channel).")
    margin: float = Field(
        1.0, gt=0, description="Each bit's projection must reach margin × |w̄| on its side (dimensionless; |w̄|, "
        "the norm of the mean filter before fingerprinting, is the standard deviation of one Gaussian projection).")
    false_accusation: float = Field(
        1e-6, gt=0, lt=1, description="Bound on the probability that one trace accuses a client whose copy the "
        "model is not (0..1).")


def fingerprint_layer(model: nn.Module, name: str | None, avoid: str | None = None) -> str:
    """Name of the fingerprinted weight: ``name`` itself (checked), or by default the weight with the
    longest mean filter (first such one on ties). ``avoid``: the weight the owner's watermark
    marks, which the fingerprint would overwrite."""
    if name is not None:
        try:
            chosen = marked_weight(model, name)
        except ValueError as exc:
            raise ValueError(f"layer: {exc}") from None
        if chosen == avoid:
            raise ValueError(f"layer: {name} carries the owner's watermark; choose another weight")
        return chosen
    weights = [(n, p) for n, p in model.named_parameters() if p.dim() > 1 and n != avoid]
    if not weights:
        raise ValueError(f"layer: the model has no weight besides {avoid}, which carries the owner's watermark")
    return max(weights, key=lambda item: item[1][0].numel())[0]


@dataclass(frozen=True)
class Trace:
    """The outcome of tracing one model.

    Attributes
    ----------
    client : int | None
        The accused client (the one with the most matches), or None when no client reaches ``required``.
    matches : Tensor
        Bits matched per client (N,), out of ``bits``.
    bits : int
        Fingerprint length T.
    required : int
        Matches an accusation needs (``bits`` + 1 when no count keeps within the bound).
    """

    client: int | None
    matches: Tensor
    bits: int
    required: int

    def ber(self, client: int) -> float:
        """Bit error rate of ``client``'s fingerprint in the model (0..1)."""
        return 1.0 - int(self.matches[client]) / self.bits


class Fingerprints:
    """The server's fingerprints for clients 0..N−1 of models shaped like ``model``.

    Parameters
    ----------
    params : FingerprintParams
        Validated settings.
    key : bytes
        The owner's secret key; client k's secrets derive from it and k alone.
    num_clients : int
        N, the clients that receive copies (and the candidates a trace chooses among).
    model : nn.Module
        A model of the architecture to fingerprint (its weights are not used).
    avoid : str | None
        The weight the owner's watermark marks (``Watermark.marked_layer``), never fingerprinted.
    """

    def __init__(self, params: FingerprintParams, key: bytes, num_clients: int, model: nn.Module,
                 avoid: str | None = None) -> None:
        if num_clients < 1:
            raise ValueError(f"num_clients must be at least 1, not {num_clients}")
        self.params, self.num_clients = params, num_clients
        self.layer = fingerprint_layer(model, params.layer, avoid)
        self.required = required_matches(params.bits, 0.5, params.false_accusation / num_clients)
        if self.required > params.bits:
            raise ValueError(f"bits: {params.bits} bits cannot single out one of {num_clients} clients with a false "
                             f"accusation probability of {params.false_accusation:g}; use more bits")
        columns = dict(model.named_parameters())[self.layer][0].numel()
        if params.bits > columns:
            raise ValueError(f"bits: {params.bits} bits do not fit the {columns} values of {self.layer}'s mean filter")
        self.secrets = ClientSecrets(key, num_clients, params.bits, columns)

    def copy_for(self, model: nn.Module, client: int) -> nn.Module:
        """A copy of ``model`` carrying ``client``'s fingerprint (``model`` is left unchanged)."""
        copied = copy.deepcopy(model)
        weight = dict(copied.named_parameters())[self.layer]
        secrets = self.secrets[client]
        with torch.no_grad():
            weight.add_(fingerprint_change(weight, secrets, self.params.margin).view_as(weight[0]))
        return copied

    def trace(self, model: nn.Module) -> Trace:
        """The client whose fingerprint ``model`` carries, or None (see the module's bound)."""
        with torch.no_grad():
            weight = dict(model.named_parameters())[self.layer]
            matches = torch.stack([
                ((projected(weight, s["projection"]) > 0).long().cpu() == s["bits"]).sum() for s in self.secrets
            ])
        best = int(matches.argmax())
        accused = best if int(matches[best]) >= self.required else None
        return Trace(accused, matches, self.params.bits, self.required)


class ClientSecrets(Sequence[Secrets]):
    """Every client's secrets, derived when asked for (:func:`client_secrets`): a round needs only
    the sampled clients', and N clients' projections would take N·T·M floats (8 GB for 10,000
    clients of the Fashion-MNIST ``cnn``)."""

    def __init__(self, key: bytes, num_clients: int, bits: int, columns: int) -> None:
        self.key, self.num_clients, self.bits, self.columns = key, num_clients, bits, columns

    def __len__(self) -> int:
        return self.num_clients

    def __getitem__(self, client: int) -> Secrets:  # type: ignore[override]
        if not 0 <= client < self.num_clients:
            raise IndexError(f"client {client} is not one of the {self.num_clients} clients")
        return client_secrets(self.key, client, self.bits, self.columns)


def client_secrets(key: bytes, client: int, bits: int, columns: int) -> Secrets:
    """Client ``client``'s ``projection`` X_k (T, M) and ``bits`` b_k (T,), derived from ``key`` and the
    client id alone; M = ``columns``, the length of the marked weight's mean filter."""
    return draw_projection(key_generator(key, f"fingerprint {client}"), bits, columns)


def fingerprint_change(weight: Tensor, secrets: Secrets, margin: float) -> Tensor:
    """The least-norm change δ (M,) of ``weight``'s mean filter w̄ after which every bit's signed
    projection (2b − 1) ⊙ X·(w̄ + δ) is at least ``margin``·|w̄|: bits short of it are moved onto
    the margin, the others keep their projection (exactly so when T ≤ M and X has full rank)."""
    projection = secrets["projection"].to(weight)
    sign = secrets["bits"].to(weight) * 2 - 1
    signed = sign * projected(weight, projection)
    target = signed.clamp(min=margin * float(mean_filter(weight).norm()))
    return torch.linalg.pinv(projection) @ (sign * (target - signed))
