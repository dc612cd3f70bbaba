"""The scenario's ``watermark`` section (pydantic).

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the scheme registry
stays the single list of schemes; the package's ``__init__`` registers every scheme before it
imports this module.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from fedsec.watermark.base import WATERMARKS
from fedsec.watermark.fingerprints import FingerprintParams
from fedsec.watermark.settings import EmbeddingConfig, WatermarkSchedule, WatermarkSection

SchemeSpec = Annotated[
    Union[tuple(WATERMARKS.get(name).Params for name in WATERMARKS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]


class WatermarkConfig(WatermarkSection):
    """The model owner's watermark: scheme, when it is embedded, and the verification bound.

    The owner holds its secrets (trigger set, key, matrices) in the run directory's ``owner/``
    folder (owner-only permissions); round records carry statistics only.
    """

    scheme: SchemeSpec = Field(description="Watermark scheme; the other keys depend on the name.")
    schedule: WatermarkSchedule = Field(default_factory=WatermarkSchedule)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    owner_samples: int = Field(
        500, ge=1, description="Clean training images the owner fine-tunes on (a key-seeded sample of the "
        "training set, disjoint from the trigger images).")
    false_alarm: float = Field(
        1e-6, gt=0, lt=1, description="Verified when the p-value (false-alarm probability) is at most this.")
    fingerprints: FingerprintParams | None = Field(
        None, description="Per-client fingerprints (after FedTracker): the server sends each sampled client its own "
        "traceable copy of the global model, and `fedsec trace` names the client a leaked copy came from; absent: "
        "every client receives the same model.")
    key: Literal["random", "seeded"] = Field(
        "random", description="random: a fresh 256-bit key from os.urandom, kept owner-only in the run's "
        "owner/key; seeded: derived from the scenario seed, INSECURE (every client receives the scenario and "
        "can derive it): for tests and reproductions only.")
