"""Which clients train in a round: a draw that the server and any audit can repeat from the seed."""

from __future__ import annotations

import numpy as np


def sample_clients(seed: int, round_number: int, num_clients: int, per_round: int) -> list[int]:
    """The partitions that train in a round: a seeded draw without replacement, sorted."""
    rng = np.random.default_rng([seed, round_number])
    return sorted(int(c) for c in rng.choice(num_clients, size=per_round, replace=False))
