"""The contract every partitioner follows, and its registry.

A partitioner is its own parameters: a frozen pydantic model whose ``name`` field is a
``Literal`` equal to the name it is registered under (the scenario's ``data.partitioner``
section), with the flwr-datasets partitioner it stands for and the bounds it puts on the data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from fedsec.registry import Registry

if TYPE_CHECKING:
    from flwr_datasets.partitioner import Partitioner as FlwrPartitioner


class Partitioner(BaseModel, ABC):
    """How a label vector is split into client index sets.

    Unknown keys are errors, values are checked on assignment and frozen, numbers are finite.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    name: str = Field(description="Name the partitioner is registered under.")

    min_examples_set_by: ClassVar[str] = ""
    """The parameters :meth:`min_examples_per_client` depends on, named when the data is too small."""

    @abstractmethod
    def flwr_partitioner(self, num_clients: int, seed: int) -> FlwrPartitioner:
        """The flwr-datasets partitioner that splits a table with a ``label`` column into
        ``num_clients`` partitions, its randomness drawn from ``seed``."""

    def min_examples_per_client(self) -> int:
        """Fewest training examples every partition needs (count); 1 by default."""
        return 1

    def check(self, num_classes: int, dataset: str) -> list[str]:
        """Why the parameters do not fit a dataset of ``num_classes`` classes named ``dataset``:
        one line each, naming the parameter; none by default."""
        return []


PARTITIONERS: Registry[type[Partitioner]] = Registry("partitioner")
