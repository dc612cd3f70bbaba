"""Owner watermarks: schemes (black-box trigger sets, white-box weights and activations),
embedding, verification statistics, the owner the server calls, and removal attacks."""

from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    Watermark,
    WatermarkParams,
)
from fedsec.watermark.config import EmbeddingConfig, WatermarkConfig, WatermarkSchedule
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
