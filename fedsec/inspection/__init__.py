"""Model inspectors (backdoor detection on the global model), repairs, and the audit that runs
them after the rounds the scenario's ``inspection`` section names."""

from fedsec.inspection.base import (
    INSPECTORS,
    REPAIRS,
    Finding,
    InspectionReport,
    Inspector,
    InspectorParams,
    QueryBudgetExceeded,
    QueryFunction,
    Repair,
    RepairResult,
    Trigger,
    build_inspector,
    build_repair,
)
from fedsec.inspection import deep_inspect, fine_pruning, neural_cleanse, restore, tabor, weight_space  # noqa: F401 (registers)
from fedsec.inspection.config import InspectionConfig  # after the methods: it builds the union of their Params
from fedsec.inspection import audit  # noqa: F401 (registers the audit builder)

__all__ = [
    "INSPECTORS",
    "REPAIRS",
    "Finding",
    "InspectionConfig",
    "InspectionReport",
    "Inspector",
    "InspectorParams",
    "QueryBudgetExceeded",
    "QueryFunction",
    "Repair",
    "RepairResult",
    "Trigger",
    "build_inspector",
    "build_repair",
]
