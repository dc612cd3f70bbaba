"""Owner watermarks: schemes (black-box trigger sets, white-box weights and activations),
embedding, verification statistics, the owner the server calls, and removal attacks."""

from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    Watermark,
    WatermarkParams,
)
from fedsec.watermark import (  # noqa: F401 (registers)
    detector, ewe, fedcrypt, keyed_labels, mixup, noise_patterns, rose_mix, uchida,
)
from fedsec.watermark.config import WatermarkConfig  # after the schemes: it builds the union of their Params
from fedsec.watermark.settings import EmbeddingConfig, WatermarkSchedule
from fedsec.watermark.stats import Verdict, binomial_p_value

__all__ = [
    "WATERMARKS",
    "EmbeddingConfig",
    "OwnerPool",
    "Secrets",
    "Verdict",
    "Watermark",
    "WatermarkConfig",
    "WatermarkParams",
    "WatermarkSchedule",
    "binomial_p_value",
]
