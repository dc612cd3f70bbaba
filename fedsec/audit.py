"""Audits: examinations that run beside the federation and never influence its training.

An audit looks at the global model after a round (model inspection, runtime guards, model
extraction) or at what the server received in that round (privacy attacks), and returns
records for one JSONL file of the run directory. A family of methods is one :class:`Audit`
subclass plus one builder registered in :data:`AUDITS`; the server builds every registered
family whose scenario section is present and calls each one when it is due.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from fedsec.registry import Registry

if TYPE_CHECKING:
    from fedsec.data.datasets import ImageDataset
    from fedsec.scenario import Scenario


@dataclass(frozen=True)
class RoundView:
    """What an audit may look at after one round.

    Attributes
    ----------
    round_number : int
        The round just finished (1-based).
    final : bool
        True after the run's last round.
    model : nn.Module
        The global model after this round, on the run's device (the evaluator's copy; an audit
        may read it but must not change it: copy it before repairing or fine-tuning).
    previous_vector : Tensor
        (d,) flattened global model the round's clients trained from.
    received : Mapping[int, Any]
        Partition id -> the update the server received and accepted for validation this round:
        a (d,) tensor in plaintext runs, ciphertexts under encryption (what the server holds).
    attacked : frozenset[int]
        Partitions that attacked this round (evaluator knowledge, for scoring only).
    run_dir : Path
        The run directory, for files an audit writes (PNG triggers, reconstructions).
    """

    round_number: int
    final: bool
    model: nn.Module
    previous_vector: torch.Tensor
    received: Mapping[int, Any]
    attacked: frozenset[int]
    run_dir: Path


class Audit(ABC):
    """One family's examination, configured by its scenario section."""

    record_file: ClassVar[str]
    """JSONL file of the run directory the records go to (e.g. ``inspection.jsonl``)."""

    @abstractmethod
    def due(self, round_number: int, final: bool) -> bool:
        """Whether the audit runs after ``round_number``."""

    @abstractmethod
    def __call__(self, view: RoundView) -> list[dict[str, Any]]:
        """Examine one round; one record per method (each carries ``round``)."""

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Entries for summary.json from all of this run's records (none by default)."""
        return {}


AuditBuilder = Callable[["Scenario", "ImageDataset", torch.device], Audit | None]
"""Builds a family's audit from the scenario (None when its section is absent)."""

AUDITS: Registry[AuditBuilder] = Registry("audit")


def build_audits(scenario: Scenario, dataset: ImageDataset, device: torch.device) -> list[Audit]:
    """Every registered family's audit that the scenario configures, in name order."""
    built = (AUDITS.get(name)(scenario, dataset, device) for name in AUDITS.names())
    return [audit for audit in built if audit is not None]
