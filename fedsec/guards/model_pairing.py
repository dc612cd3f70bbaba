"""Model pairing with embedding translation (Unnervik, EPFL thesis 2024, chapter 5).

The server trains a reference model of its own on its clean data. An embedding translator maps
the deployed (probe) model's penultimate-layer embedding into the reference model's embedding
space; it is learned on clean data. On a clean input both models agree, so the translated
embedding lies close to the reference's (cosine similarity near 1); a trigger that activates a
backdoor in one model and not the other breaks that agreement. The guard rejects inputs whose
cosine similarity is lower than on clean inputs at the configured FRR.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from fedsec.guards.base import GUARDS, CleanData, Guard, GuardParams, images
from fedsec import models
from fedsec.models import MODELS, build_model

Translation = Literal["linear-cosine", "least-squares", "rotation"]


@torch.no_grad()
def penultimate(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """(N, d) embeddings of images ``x`` in 0..1: the input of the model's last linear layer."""
    model.eval()
    return torch.cat([models.penultimate(model, batch) for batch in x.split(batch_size)])


def cosine_translator(probe: Tensor, reference: Tensor, steps: int, lr: float, batch_size: int,
                      generator: torch.Generator) -> nn.Linear:
    """An affine layer from probe to reference embeddings trained with Adam on the negative
    cosine similarity (the thesis's translator)."""
    layer = nn.Linear(probe.shape[1], reference.shape[1]).to(probe.device)
    with torch.no_grad():
        bound = probe.shape[1] ** -0.5
        layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
        layer.bias.zero_()
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr)
    for _ in range(steps):
        batch = torch.randint(len(probe), (min(batch_size, len(probe)),), generator=generator).to(probe.device)
        loss = -nn.functional.cosine_similarity(layer(probe[batch]), reference[batch]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return layer.requires_grad_(False)


def least_squares_translator(probe: Tensor, reference: Tensor) -> nn.Linear:
    """The affine map minimising the squared error to the reference embeddings (closed form)."""
    ones = torch.ones(len(probe), 1, device=probe.device, dtype=probe.dtype)
    solution = torch.linalg.lstsq(torch.cat([probe, ones], 1).double(), reference.double()).solution.float()
    layer = nn.Linear(probe.shape[1], reference.shape[1]).to(probe.device).requires_grad_(False)
    layer.weight.copy_(solution[:-1].T)
    layer.bias.copy_(solution[-1])
    return layer


def rotation_translator(probe: Tensor, reference: Tensor) -> nn.Linear:
    """The rotation between unit-normalised embeddings (Kabsch; the thesis's appendix C.1):
    C = E_prb^T E_ref = U Σ V^T, W = U D V^T with D correcting a reflection; e_trs = W^T e_prb."""
    if probe.shape[1] != reference.shape[1]:
        raise ValueError(f"rotation needs embeddings of one size (probe {probe.shape[1]}, reference {reference.shape[1]})")
    p = nn.functional.normalize(probe.double(), dim=1)
    r = nn.functional.normalize(reference.double(), dim=1)
    u, _, vh = torch.linalg.svd(p.T @ r)
    d = torch.ones(len(u), dtype=u.dtype, device=u.device)
    d[-1] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    layer = nn.Linear(probe.shape[1], reference.shape[1], bias=False).to(probe.device).requires_grad_(False)
    layer.weight.copy_(((u * d) @ vh).T.float())
    return layer


def train_classifier(model: nn.Module, clean: CleanData, epochs: int, lr: float, batch_size: int,
                     generator: torch.Generator) -> nn.Module:
    """``model`` trained in place with Adam and cross-entropy on the clean data."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = images(clean.x), clean.y
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).to(y.device).split(batch_size):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval().requires_grad_(False)


@GUARDS.register("model-pairing")
class ModelPairing(Guard):
    """Rejects inputs on which the deployed model and an independent reference model disagree."""

    class Params(GuardParams):
        name: Literal["model-pairing"] = "model-pairing"
        reference: str = Field(
            "same", description="Architecture of the reference model: same (the deployed model's, freshly "
            "initialised) or a registered model name.")
        reference_epochs: int = Field(5, ge=1, le=1000, description="Epochs of the reference model's training.")
        reference_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the reference model.")
        translation: Translation = Field(
            "linear-cosine", description="linear-cosine: an affine layer trained on the negative cosine "
            "similarity (the thesis); least-squares: the closed-form affine least-squares map; rotation: the "
            "closed-form rotation of unit-normalised embeddings (thesis appendix C.1; equal sizes only).")
        translation_steps: int = Field(300, ge=1, le=100_000, description="Adam steps of the linear-cosine translator.")
        translation_lr: float = Field(1e-2, gt=0, description="Adam learning rate of the linear-cosine translator.")
        batch_size: int = Field(128, ge=1, le=65_536, description="Examples per training step and per forward pass.")

        @field_validator("reference")
        @classmethod
        def _known(cls, value: str) -> str:
            if value != "same" and value not in MODELS:
                raise ValueError(f"{value!r} is not same or one of {MODELS.names()}")
            return value

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.params: ModelPairing.Params = params
        self.reference_model: nn.Module | None = None
        self.translator: nn.Linear | None = None

    def _new_reference(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> nn.Module:
        device = clean.x.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
            if self.params.reference == "same":
                fresh = copy.deepcopy(model).requires_grad_(True)
                for module in fresh.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
            else:
                fresh = build_model(self.params.reference, tuple(clean.x.shape[1:]), clean.num_classes,
                                    clean.mean, clean.std).to(device)
        p = self.params
        return train_classifier(fresh, clean, p.reference_epochs, p.reference_lr, p.batch_size, generator)

    def _fit(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:
        """Train the reference once (it does not depend on the deployed model), then the translator."""
        if self.reference_model is None:
            self.reference_model = self._new_reference(model, clean, generator)
        x, p = images(clean.x), self.params
        probe = penultimate(model, x, p.batch_size)
        reference = penultimate(self.reference_model, x, p.batch_size)
        if p.translation == "linear-cosine":
            self.translator = cosine_translator(probe, reference, p.translation_steps, p.translation_lr,
                                                p.batch_size, generator)
        elif p.translation == "least-squares":
            self.translator = least_squares_translator(probe, reference)
        else:
            self.translator = rotation_translator(probe, reference)

    @torch.no_grad()
    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """1 − cosine similarity between the translated probe embedding and the reference embedding."""
        assert self.reference_model is not None and self.translator is not None, "fit first"
        x = images(x)
        translated = self.translator(penultimate(model, x, self.params.batch_size))
        reference = penultimate(self.reference_model, x, self.params.batch_size)
        return 1 - nn.functional.cosine_similarity(translated, reference)
