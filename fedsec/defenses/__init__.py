"""Server-side defenses on the (n_clients, d) update matrix: robust aggregation and screening.

Importing the package registers every method in :data:`DEFENSES` under its scenario name.
"""

from fedsec.defenses import (  # noqa: F401  (imported to register them)
    bulyan,
    centered_clipping,
    crfl,
    dnc,
    dp_noise,
    fedavg,
    flame,
    fltrust,
    foolsgold,
    geometric_median,
    krum,
    median,
    multi_krum,
    norm_clipping,
    signguard,
    trimmed_mean,
)
from fedsec.defenses.base import (
    DEFENSES,
    BelowMinimum,
    Decision,
    Defense,
    DefenseParams,
    Kind,
    UpdateBatch,
)
from fedsec.defenses.pipeline import DefensePipeline, build_pipeline

__all__ = [
    "DEFENSES",
    "BelowMinimum",
    "Decision",
    "Defense",
    "DefenseParams",
    "DefensePipeline",
    "Kind",
    "UpdateBatch",
    "build_pipeline",
]
