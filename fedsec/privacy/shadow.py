"""Shadow-model membership inference (Shokri et al., S&P 2017), its attack model from IBM ART."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from fedsec.privacy.base import PRIVACY_ATTACKS, AttackerData, MembershipInference
from fedsec.privacy.shadows import (
    PREDICT_BATCH,
    ShadowParams,
    half_memberships,
    pool_sample,
    shadow_logits,
    train_shadows,
)

if TYPE_CHECKING:
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox


@PRIVACY_ATTACKS.register("shadow")
class ShadowModels(MembershipInference):
    """Shadow models of the target's architecture train as the clients do, each on a random half
    of the attacker's own examples; an attack model learns to tell, from a shadow's probability
    vector and the true label, whether the example was in that shadow's half; it then scores
    the target model's probability vectors (its membership probability). The attack model is
    ART's ``MembershipInferenceBlackBox`` (one model with the label as an input)."""

    class Params(ShadowParams):
        name: Literal["shadow"] = "shadow"
        attack_model: Literal["nn", "rf", "gb", "lr"] = Field(
            "nn", description="ART's attack model: nn (a neural network, as Shokri et al.), rf (random "
            "forest), gb (gradient boosting), lr (logistic regression).")
        attack_epochs: int = Field(100, ge=1, le=10_000, description="Training passes of the nn attack model over the shadow outputs (epochs; ART's 100).")

    params: Params
    attack: MembershipInferenceBlackBox | None = None

    def prepare(self, data: AttackerData, generator: torch.Generator) -> None:
        p = self.params
        x, y = pool_sample(data, p.pool_size, generator)
        keep = half_memberships(p.shadow_models, len(y), generator)
        probabilities = torch.cat([shadow_logits(model, x, data.device).softmax(dim=1)
                                   for model in train_shadows(data, x, y, keep, p.epochs, generator)])
        is_member = keep.reshape(-1)
        labels = y.repeat(p.shadow_models)
        self.fit_attack(probabilities[is_member], labels[is_member], probabilities[~is_member], labels[~is_member],
                        data, int(torch.randint(2**31, (1,), generator=generator)))

    def fit_attack(
        self, member_probabilities: torch.Tensor, member_labels: torch.Tensor,
        nonmember_probabilities: torch.Tensor, nonmember_labels: torch.Tensor, data: AttackerData, seed: int,
    ) -> None:
        """Train ART's attack model on the shadow models' probability vectors (N, K) and labels (N,)
        of their members and non-members; its random choices seeded by ``seed``."""
        from art.attacks.inference.membership_inference import MembershipInferenceBlackBox  # seconds to import
        from art.estimators.classification import PyTorchClassifier

        classes = member_probabilities.shape[1]
        estimator = PyTorchClassifier(data.build_model(), nn.CrossEntropyLoss(), tuple(data.pool_x.shape[1:]),
                                      classes, device_type="cpu")
        attack = MembershipInferenceBlackBox(estimator, input_type="prediction",
                                             attack_model_type=self.params.attack_model,
                                             nn_model_epochs=self.params.attack_epochs)
        with torch.random.fork_rng(devices=[]):  # ART's attack model draws from the global generators
            torch.manual_seed(seed)
            state = np.random.get_state()
            np.random.seed(seed)
            try:
                attack.fit(y=member_labels.numpy(), test_y=nonmember_labels.numpy(),
                           pred=member_probabilities.numpy(), test_pred=nonmember_probabilities.numpy())
            finally:
                np.random.set_state(state)
        self.attack = attack

    @torch.no_grad()
    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.attack is None:
            raise ValueError("the shadow attack scores only after prepare")
        model.eval()
        probabilities = torch.cat([model(b) for b in x.split(PREDICT_BATCH)]).softmax(dim=1).cpu()
        inferred = self.attack.infer(None, y.cpu().numpy(), pred=probabilities.numpy(), probabilities=True)
        return torch.from_numpy(np.asarray(inferred, dtype=np.float32).reshape(-1))

    def threshold(self, member_scores: torch.Tensor) -> float:
        """A membership probability of one half."""
        return 0.5
