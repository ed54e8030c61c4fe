"""CV-QKD GG02: limits and monotonic behaviour beyond the reference values."""

from __future__ import annotations

import itertools
import math

import pytest

from qnet.physics import CVQKDParams, cv_qkd_rate, key_rate
from qnet.physics.cvqkd import holevo_bound_eve, mutual_information_ab


def test_mutual_information_of_an_ideal_channel() -> None:
    """Lossless, noiseless, ideal detector: I_AB = 1/2 log2(1 + V_A) (Shannon, homodyne)."""
    p = CVQKDParams(excess_noise=0.0, detector_efficiency=1.0, electronic_noise=0.0)
    assert mutual_information_ab(p, 1.0) == pytest.approx(0.5 * math.log2(5.0), rel=1e-12)


def test_pure_loss_eve_information_is_below_mutual_information() -> None:
    """On a pure-loss channel with perfect reconciliation reverse reconciliation beats Eve
    at every loss (Grosshans et al., Nature 421, 238 (2003))."""
    p = CVQKDParams(excess_noise=0.0, reconciliation_efficiency=1.0)
    for t in (0.9, 0.5, 0.1, 0.01, 1e-4):
        assert mutual_information_ab(p, t) > holevo_bound_eve(p, t) > 0


@pytest.mark.parametrize(("name", "worse"), [
    ("excess_noise", 0.05), ("electronic_noise", 0.2), ("reconciliation_efficiency", 0.9),
])
def test_more_noise_or_worse_reconciliation_lowers_rate(name: str, worse: float) -> None:
    """More excess or electronic noise, or a lower beta, lowers the rate."""
    assert key_rate("cv-qkd", 25.0, {name: worse}).rate_per_pulse < key_rate("cv-qkd", 25.0).rate_per_pulse


def test_large_excess_noise_kills_the_key() -> None:
    """Excess noise of 0.2 SNU leaves no key at 50 km."""
    assert key_rate("cv-qkd", 50.0, {"excess_noise": 0.2}).rate_per_pulse == 0.0


def test_rate_falls_with_distance() -> None:
    """The rate decreases strictly with distance while it is positive."""
    rates = [cv_qkd_rate(CVQKDParams(), 10 ** (-0.02 * d)).rate_per_pulse for d in range(0, 200, 20)]
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_cv_qkd_reports_per_symbol_without_mu() -> None:
    """CV-QKD has no mu and no QBER; rate_bps uses the symbol rate."""
    point = key_rate("cv-qkd", 25.0, {"rep_rate_hz": 1e6})
    assert point.mu is None and point.qber is None
    assert point.rate_bps == pytest.approx(point.rate_per_pulse * 1e6)
