"""DP-FedAvg: client-level differential privacy by the server (McMahan et al., ICLR 2018)."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.accounting import gaussian_epsilon

from fedsec.defenses._math import clip_factors, gaussian_like, row_norms
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register
from fedsec.defenses.scalars import Scalar, ScalarBatch


@register("dp-fedavg")
class DPFedAvg(Defense):
    """Clip every accepted update to an L2 norm of at most ``clip``, average them with equal
    weights (example counts are not used: one client moves the mean by at most clip / m) and add
    N(0, (noise_multiplier · clip / m)² I), m the round's accepted updates.

    Each round is then a Gaussian mechanism on the set of clients, and the rounds compose into a
    client-level (ε, δ) guarantee (:meth:`client_level_epsilon`). Score: each update's norm before
    clipping (L2). Decides from the rows' norms, so it runs on ciphertexts.
    """

    kind = Kind.AGGREGATE
    rejects = False

    class Params(DefenseParams):
        clip: float = Field(1.0, gt=0.0, description="S: largest update norm a client contributes (L2, update units).")
        noise_multiplier: float = Field(
            1.0, ge=0.0, le=1_000, description="z: noise std in units of clip / m (0: clipping only, ε infinite).")
        delta: float = Field(
            1e-5, gt=0.0, lt=1.0, description="δ of the reported client-level (ε, δ) guarantee (a probability; "
            "below 1 / the number of clients).")
        accounting: Literal["poisson", "no-amplification"] = Field(
            "poisson", description="poisson: RDP of the Gaussian subsampled at clients_per_round / num_clients, as "
            "McMahan et al. account (it assumes each client is taken independently); no-amplification: the rounds' "
            "Gaussian mechanisms composed with no credit for sampling, valid for any sampling.")

    params: Params

    def _clipped_share(self, norms: Tensor) -> float:
        """The share (0..1) of the rows of L2 norms ``norms`` that the clip shortens."""
        return float((norms > self.params.clip).double().mean())

    def _std(self, rows: int) -> float:
        """The noise std (update units) on the mean of ``rows`` clipped updates."""
        return self.params.noise_multiplier * self.params.clip / rows

    def decide(self, batch: UpdateBatch) -> Decision:
        norms = row_norms(batch.updates)
        factors = clip_factors(norms, self.params.clip)
        std = self._std(batch.n)
        aggregate = (factors / batch.n) @ batch.updates  # the mean of the clipped rows, without a copy of them
        if std > 0:
            aggregate = aggregate + gaussian_like(aggregate, std, batch.require_generator(self.name))
        contributions = factors * norms  # each clipped row's norm
        return Decision(aggregate=aggregate, score=norms, contributions=contributions,
                        info={"std": std, "clipped": self._clipped_share(norms)})

    def needs(self) -> frozenset[Scalar]:
        """The squared norms of the rows."""
        return frozenset({Scalar.NORMS})

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """Each accepted row's scale multiplied by its clip factor, equal coefficients 1 / m, and
        the noise drawn as :meth:`decide` draws it."""
        index = batch.accepted.nonzero().squeeze(1)
        if index.numel() == 0:
            return batch
        norms = batch.norms(index)
        scale = batch.scale.clone()
        scale[index] *= clip_factors(norms, self.params.clip)
        coefficients = batch.accepted.to(scale.dtype) / index.numel()
        std = self._std(index.numel())
        info = {**batch.info, f"{self.name}.std": std, f"{self.name}.clipped": self._clipped_share(norms)}
        batch = replace(batch, scale=scale, coefficients=coefficients, info=info).with_noise(std)
        return batch.with_score(self.name, index, norms)

    def client_level_epsilon(self, rounds: int, sample_rate: float) -> float | None:
        """ε at the stage's δ after ``rounds`` rounds that each take a client with probability
        ``sample_rate`` (Rényi DP of the subsampled Gaussian, Mironov et al. 2019; opacus's
        accountant, checked against Flower's)."""
        rate = sample_rate if self.params.accounting == "poisson" else 1.0
        return gaussian_epsilon(self.params.noise_multiplier, rate, rounds, self.params.delta)
