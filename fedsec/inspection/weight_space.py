"""Weight-space anomaly detection (Unnervik, EPFL thesis 2024, chapter 4): the neuron weight
vectors of one layer of clean reference models are reduced by PCA and modelled by a Gaussian
mixture whose number of components minimises BIC (or AIC); a model whose vectors have a low total
log-likelihood under that mixture is flagged.

The thesis interprets a layer's weight matrix two ways: *backward*, one vector per output neuron
(its incoming weights: a row of the weight, a flattened convolution kernel), and *forward*, one
vector per input unit (a column). The threshold is the log-likelihood quantile at the chosen
false-rejection rate over clean reference models held out of the fit (the thesis' 70/30 split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from fedsec.inspection.base import INSPECTORS, Finding, Inspector, InspectorParams, Subject, register

if TYPE_CHECKING:  # scikit-learn is imported where it is used: it would slow every command's start-up
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

Interpretation = Literal["backward", "forward"]
Criterion = Literal["bic", "aic"]
Covariance = Literal["full", "diag", "tied", "spherical"]


def neuron_vectors(weight: Tensor, interpretation: Interpretation) -> Tensor:
    """The layer's vectors, (m, k): ``weight`` (out, in, ...) as rows per output neuron
    (backward) or as columns per input unit (forward, kernels flattened first)."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    return rows if interpretation == "backward" else rows.T


def select_mixture(
    z: np.ndarray, candidates: Sequence[int], criterion: Criterion, covariance: Covariance, seed: int
) -> GaussianMixture:
    """The mixture fitted on ``z`` (n, b) whose number of components, among ``candidates`` not
    above n, has the smallest ``criterion``."""
    from sklearn.mixture import GaussianMixture

    fitted = [GaussianMixture(k, covariance_type=covariance, random_state=seed).fit(z)
              for k in candidates if k <= len(z)]
    return min(fitted, key=lambda mixture: getattr(mixture, criterion)(z))


@dataclass(frozen=True)
class WeightDensity:
    """The fitted model of clean weight vectors and the log-likelihood threshold."""

    pca: PCA
    mixture: GaussianMixture
    threshold: float

    def vector_scores(self, vectors: Tensor) -> np.ndarray:
        """Log-likelihood of each of a model's vectors (m, k) under the mixture, (m,)."""
        return self.mixture.score_samples(self.pca.transform(vectors.detach().cpu().double().numpy()))

    def score(self, vectors: Tensor) -> float:
        """Log-likelihood of a model: the sum over its vectors (independent vectors, as the thesis)."""
        return float(self.vector_scores(vectors).sum())


def fit_density(
    references: Sequence[Tensor],
    variance: float,
    candidates: Sequence[int],
    criterion: Criterion,
    covariance: Covariance,
    false_rejection: float,
    holdout: float,
    seed: int,
) -> WeightDensity:
    """Fit PCA and the mixture on the vectors (m, k) of the clean ``references`` (one matrix per
    model) less a seeded ``holdout`` share of them, and set the threshold at the ``false_rejection``
    quantile of the held-out models' scores (of the fitted ones when ``holdout`` is 0)."""
    from sklearn.decomposition import PCA

    order = np.random.default_rng(seed).permutation(len(references))
    held = min(len(references) - 1, max(1, round(holdout * len(references)))) if holdout > 0 else 0
    fitted, calibration = order[held:], (order[:held] if held else order)
    x = np.concatenate([references[i].detach().cpu().double().numpy() for i in fitted])
    pca = PCA(n_components=variance if variance < 1 else None, svd_solver="full").fit(x)
    mixture = select_mixture(pca.transform(x), candidates, criterion, covariance, seed)
    density = WeightDensity(pca, mixture, threshold=-np.inf)
    scores = [density.score(references[i]) for i in calibration]
    return WeightDensity(pca, mixture, float(np.quantile(scores, false_rejection)))


class WeightSpaceSettings(BaseModel):
    """The detector's settings, shared by the inspector and the screening defense."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    interpretation: Interpretation = Field(
        "backward", description="backward: one vector per output neuron (its incoming weights); forward: "
        "one per input unit (its outgoing weights).")
    variance: float = Field(
        0.95, gt=0, le=1, description="Share of the variance (0..1) the PCA keeps (1: every component).")
    components: list[int] = Field(
        [1, 2, 3, 5, 8], min_length=1, max_length=32, description="Candidate numbers of mixture "
        "components; the one with the smallest criterion is kept.")
    criterion: Criterion = Field("bic", description="Information criterion choosing the number of components.")
    covariance: Covariance = Field("full", description="Covariance of each mixture component (scikit-learn's "
                                   "covariance_type).")
    false_rejection: float = Field(
        0.05, ge=0, le=1, description="Share of clean models (0..1) below the threshold: the log-likelihood "
        "quantile that sets it.")
    holdout: float = Field(
        0.3, ge=0, lt=1, description="Share of the reference models (0..1) kept out of the fit to set the "
        "threshold (0: set it on the fitted ones, optimistic).")
    seed: int = Field(0, ge=0, description="Seed of the hold-out draw and of the mixtures' initialisation.")

    @model_validator(mode="after")
    def _positive_components(self) -> WeightSpaceSettings:
        if min(self.components) < 1:
            raise ValueError("components must be at least 1")
        return self

    def fit(self, references: Sequence[Tensor]) -> WeightDensity:
        """:func:`fit_density` with these settings on the vectors of each reference model."""
        return fit_density(references, self.variance, self.components, self.criterion, self.covariance,
                           self.false_rejection, self.holdout, self.seed)


@register(INSPECTORS, "weight-space")
class WeightSpace(Inspector):
    """Log-likelihood of the model's layer under a density fitted on clean reference models.

    Score: the log-likelihood; flagged when it is below the threshold. On the model's last
    layer read backward (one vector per class), the target named is the class whose vector is
    least likely.
    """

    class Params(WeightSpaceSettings, InspectorParams):
        name: Literal["weight-space"] = "weight-space"
        layer: str | None = Field(
            None, description="State-dict key of the weight examined (e.g. '1.9.weight'); none: the model's "
            "last weight matrix.")
        references: int = Field(
            8, ge=2, le=1_000, description="Clean reference models fitted (count): the server trains them from "
            "the previous global model on its clean data.")

    params: Params
    suspicion_sign = -1  # a low log-likelihood is suspect

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.density: WeightDensity | None = None

    def references(self) -> int:
        return self.params.references

    def fit(self, references: Sequence[nn.Module]) -> None:
        self.density = self.params.fit([self._vectors(model) for model in references])

    def _inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> Finding:
        assert isinstance(subject, nn.Module)  # needs_weights: Inspector.inspect refuses query functions
        if self.density is None:
            raise RuntimeError("weight-space: fit it on reference models before inspecting")
        vectors = self._vectors(subject)
        per_vector = self.density.vector_scores(vectors)
        score = float(per_vector.sum())
        flagged = score < self.density.threshold
        on_classes = self.params.interpretation == "backward" and self._layer(subject) == _last_weight(subject)
        return Finding(
            backdoored=flagged, score=score, threshold=self.density.threshold,
            targets=(int(per_vector.argmin()),) if flagged and on_classes else (),
            class_scores=tuple(per_vector.tolist()) if on_classes else (),
        )

    def _layer(self, model: nn.Module) -> str:
        return self.params.layer if self.params.layer is not None else _last_weight(model)

    def _vectors(self, model: nn.Module) -> Tensor:
        state = model.state_dict()
        layer = self._layer(model)
        if layer not in state:
            raise KeyError(f"weight-space: {layer!r} is not an entry of the model's state")
        return neuron_vectors(state[layer], self.params.interpretation)


def _last_weight(model: nn.Module) -> str:
    return [name for name, value in model.named_parameters() if value.dim() >= 2][-1]
