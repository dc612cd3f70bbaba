"""Data sanitization at honest clients (spectral signatures, activation clustering): the registry,
one file per sanitizer, and the scenario section."""

from fedsec.sanitization.base import (
    SANITIZERS,
    Sanitizer,
    SanitizerParams,
    build_sanitizer,
    penultimate_features,
)
from fedsec.sanitization import activation_clustering, spectral_signatures  # noqa: F401 (registers)
from fedsec.sanitization.config import SanitizationConfig  # after the sanitizers: it builds the union of their Params

__all__ = [
    "SANITIZERS",
    "SanitizationConfig",
    "Sanitizer",
    "SanitizerParams",
    "build_sanitizer",
    "penultimate_features",
]
