"""The scenario's ``sanitization`` section (pydantic), and the step an honest client runs with it.

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the sanitizer registry
stays the single list of sanitizers; the package's ``__init__`` registers every sanitizer first.
"""

from __future__ import annotations

from typing import Annotated, Union

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from fedsec.sanitization.base import SANITIZERS, build_sanitizer, penultimate_features

SanitizerSpec = Annotated[
    Union[tuple(SANITIZERS.get(name).Params for name in SANITIZERS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]


class SanitizationConfig(BaseModel):
    """Data sanitization by every honest client before its local training, on its own data, with
    the global model it received as feature extractor. Unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    method: SanitizerSpec = Field(description="The sanitizer and its parameters; the other keys depend on the name.")  # type: ignore[valid-type]
    batch_size: int = Field(1024, ge=1, le=65_536, description="Images per forward pass of the feature extractor.")

    def flag(self, model: nn.Module, x: Tensor, y: Tensor, device: torch.device, seed: int) -> Tensor:
        """Rows of the client's uint8 images ``x`` and labels ``y`` the sanitizer removes: bool
        ``(N,)`` on ``y``'s device; ``seed``: the client's seed for this round."""
        features = penultimate_features(model, x, self.batch_size, device)
        return build_sanitizer(self.method).flag(features, y.to(device), seed).to(y.device)
