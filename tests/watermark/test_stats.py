"""Binomial p-values and verdicts against scipy's distribution."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binom

from fedsec.watermark.stats import Verdict, binomial_bits, binomial_p_value


@pytest.mark.parametrize(("k", "n", "p0"), [(0, 10, 0.1), (3, 10, 0.1), (40, 100, 0.1), (100, 100, 0.1), (50, 64, 0.5)])
def test_p_value_is_the_upper_binomial_tail(k: int, n: int, p0: float) -> None:
    tail = sum(binom.pmf(i, n, p0) for i in range(k, n + 1))
    assert binomial_p_value(k, n, p0) == pytest.approx(tail, rel=1e-9)
    assert binomial_bits(k, n, p0) == pytest.approx(-math.log2(tail), rel=1e-6, abs=1e-9)


def test_bits_stay_finite_when_the_p_value_underflows() -> None:
    assert binomial_p_value(1000, 1000, 0.1) == 0.0
    assert binomial_bits(1000, 1000, 0.1) == pytest.approx(1000 * math.log2(10), rel=1e-9)


def test_verdict_uses_the_false_alarm_bound_and_the_statistic() -> None:
    strong = Verdict.binomial("match", 45, 100, 0.1, 1e-12)
    assert strong.verified and strong.statistic == 0.45 and strong.p_value <= 1e-12
    weak = Verdict.binomial("match", 15, 100, 0.1, 1e-3)
    assert not weak.verified and weak.p_value > 1e-3
    bits = Verdict.binomial("ber", 60, 64, 0.5, 1e-6)
    assert bits.statistic == pytest.approx(4 / 64) and bits.verified
    assert set(bits.record()) == {"wm_ber", "wm_p_value", "wm_bits", "wm_verified"}
