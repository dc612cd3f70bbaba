"""Server-side defenses on the (n_clients, d) update matrix: robust aggregation and screening.

Importing the package registers every method in :data:`DEFENSES` under its scenario name.
A stage whose decision needs only scalars of the rows also runs on them
(:func:`run_scalar_pipeline`), which is how it runs on CKKS ciphertexts.
"""

from fedsec.defenses import (  # noqa: F401  (imported to register them)
    bulyan,
    centered_clipping,
    crfl,
    dnc,
    dp_fedavg,
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
    weight_space,
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
from fedsec.defenses.pipeline import DefensePipeline, build_pipeline, encrypted_defense_problem
from fedsec.defenses.scalars import Scalar, ScalarBatch, ScalarSource, TensorScalars, run_scalar_pipeline

__all__ = [
    "DEFENSES",
    "BelowMinimum",
    "Decision",
    "Defense",
    "DefenseParams",
    "DefensePipeline",
    "Kind",
    "Scalar",
    "ScalarBatch",
    "ScalarSource",
    "TensorScalars",
    "UpdateBatch",
    "build_pipeline",
    "encrypted_defense_problem",
    "run_scalar_pipeline",
]
