"""Privacy accounting of a composed, subsampled Gaussian mechanism (Opacus's accountants): the ε
of DP-SGD's steps on a client's examples and of DP-FedAvg's rounds on the set of clients."""

from __future__ import annotations

import math
from typing import Literal

Accountant = Literal["rdp", "prv"]


def gaussian_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "rdp"
) -> float:
    """ε at ``delta`` after ``steps`` releases of the Gaussian mechanism with noise std
    ``noise_multiplier`` times the sensitivity, each on a Poisson sample at ``sample_rate`` (1: no
    sampling); 0 before any step, inf without noise. ``rdp``: Rényi DP of the subsampled Gaussian
    (Mironov et al. 2019); ``prv``: Gopi et al.'s numerical accountant."""
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    from opacus.accountants import create_accountant  # opacus takes seconds to import: only when used

    tracker = create_accountant(accountant)
    tracker.history = [(noise_multiplier, sample_rate, steps)]
    return float(tracker.get_epsilon(delta=delta))
