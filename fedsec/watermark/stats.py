"""Verification statistics (docs/metrics.md): binomial false-alarm probabilities and the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def binomial_p_value(matches: int, total: int, chance: float) -> float:
    """P[Binomial(total, chance) >= matches]: the probability that a model without the watermark
    matches at least ``matches`` of ``total`` secret answers, each by chance with probability ``chance``."""
    from scipy.stats import binom  # here: scipy.stats costs ~1 s of start-up in every client process

    return float(binom.sf(matches - 1, total, chance))


def required_matches(total: int, chance: float, false_alarm: float) -> int:
    """Fewest matches of ``total`` answers whose binomial p-value is at most ``false_alarm``
    (``total + 1`` when none is)."""
    return next((k for k in range(total + 1) if binomial_p_value(k, total, chance) <= false_alarm), total + 1)


def binomial_bits(matches: int, total: int, chance: float) -> float:
    """-log2 of :func:`binomial_p_value`, summed in log space so it stays finite when the p-value
    underflows a float."""
    from scipy.special import logsumexp
    from scipy.stats import binom

    log_tail = logsumexp(binom.logpmf(np.arange(max(matches, 0), total + 1), total, chance))
    return float(max(-log_tail, 0.0) / math.log(2))


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one model for one watermark.

    Attributes
    ----------
    statistic : float
        The scheme's statistic: ``match`` (share of triggers classified as their secret label, 0..1),
        ``ber`` (share of wrong bits, 0..1) or ``wdr`` (share of bits the detector recovers, 0..1).
    statistic_name : str
        Which of the three ``statistic`` is.
    matches, total : int
        Secret answers the model matched, out of how many.
    chance : float
        Probability of a match by a model without the watermark (1/C for labels, 1/2 for bits).
    p_value : float
        False-alarm probability of at least ``matches`` matches.
    bits : float
        -log2(p_value), the evidence in bits.
    verified : bool
        True when ``p_value`` is at most the scenario's false-alarm bound.
    """

    statistic: float
    statistic_name: str
    matches: int
    total: int
    chance: float
    p_value: float
    bits: float
    verified: bool

    @classmethod
    def binomial(cls, statistic_name: str, matches: int, total: int, chance: float, false_alarm: float) -> Verdict:
        """The verdict for ``matches`` of ``total`` answers, with the statistic derived from the counts."""
        rate = matches / total
        statistic = 1.0 - rate if statistic_name == "ber" else rate
        p_value = binomial_p_value(matches, total, chance)
        return cls(statistic, statistic_name, matches, total, chance, p_value,
                   binomial_bits(matches, total, chance), p_value <= false_alarm)

    def record(self) -> dict[str, float]:
        """Round-record fields (statistics only): ``wm_<statistic>``, ``wm_p_value``, ``wm_bits``,
        ``wm_verified``."""
        return {f"wm_{self.statistic_name}": self.statistic, "wm_p_value": self.p_value,
                "wm_bits": self.bits, "wm_verified": int(self.verified)}
