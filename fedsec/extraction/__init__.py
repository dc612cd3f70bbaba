"""Model extraction: attacks that steal the global model through its prediction API, the PRADA
detector, and the audit that runs them beside a federation (docs/extraction.md)."""

from fedsec.extraction.base import (
    EXTRACTIONS,
    BudgetExhausted,
    Extraction,
    ExtractionParams,
    Oracle,
    build_extraction,
)
from fedsec.extraction import jacobian, knockoff, retraining  # noqa: F401 (registers)
from fedsec.extraction.config import ExtractionConfig  # after the attacks: it builds the union of their Params
from fedsec.extraction import audit  # noqa: F401 (registers the audit family)
from fedsec.extraction.prada import Prada, PradaParams, queries_until_detection

__all__ = [
    "EXTRACTIONS",
    "BudgetExhausted",
    "Extraction",
    "ExtractionConfig",
    "ExtractionParams",
    "Oracle",
    "Prada",
    "PradaParams",
    "build_extraction",
    "queries_until_detection",
]
