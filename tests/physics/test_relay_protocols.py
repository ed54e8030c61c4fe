"""MDI-QKD and twin-field (phase-matching) QKD: analytic limits and scaling with loss."""

from __future__ import annotations

import math

import pytest

from qnet.physics import key_rate
from qnet.physics.mdiqkd import rectilinear_gain, single_photon_yield
from qnet.physics.tfqkd import TFQKDParams, phase_error


def test_mdi_single_photon_yield_without_dark_counts() -> None:
    """Ma-Razavi eq. 21 with p_d = 0: Y_11 = eta_a eta_b / 2 (a Bell state is identified half the
    time), and e_11 = e_d (eq. 23)."""
    y11, e11 = single_photon_yield(0.1, 0.2, 0.0, 0.015)
    assert y11 == pytest.approx(0.01, rel=1e-12)
    assert e11 == pytest.approx(0.015, rel=1e-12)


def test_mdi_rectilinear_error_is_misalignment_without_dark_counts() -> None:
    """With p_d = 0 every Z-basis error comes from misalignment: E_rect = e_d exactly."""
    _gain, qber = rectilinear_gain(0.5, 0.5, 0.1, 0.1, 0.0, 0.015)
    assert qber == pytest.approx(0.015, rel=1e-12)


def test_mdi_rate_scales_linearly_with_transmittance() -> None:
    """MDI-QKD needs both photons to arrive: rate ~ eta (log-log slope 1) at moderate loss."""
    r50, r100 = (key_rate("mdi-qkd", d).rate_per_pulse for d in (50.0, 100.0))
    slope = math.log10(r50 / r100) / (0.2 * 50 / 10)
    assert slope == pytest.approx(1.0, abs=0.05)


def test_tf_rate_scales_with_square_root_of_transmittance() -> None:
    """Twin-field QKD needs one photon over half the channel: rate ~ sqrt(eta) (slope 1/2)."""
    r100, r200 = (key_rate("tf-qkd", d).rate_per_pulse for d in (100.0, 200.0))
    slope = math.log10(r100 / r200) / (0.2 * 100 / 10)
    assert slope == pytest.approx(0.5, abs=0.05)


def test_tf_phase_error_of_a_perfect_channel() -> None:
    """Without noise the phase error is the share of clicks from even photon numbers ((*) of
    qnet.physics.tfqkd):
    with eta = 1 every photon clicks, so it is P(k even, k >= 2) / P(k >= 1) for Poisson light,
    and it grows with mu (the reason mu stays small)."""
    p = TFQKDParams(dark_count_prob_per_detector=0.0, misalignment=0.0)
    for mu in (0.05, 0.5):
        even = (math.cosh(mu) - 1) * math.exp(-mu)
        assert phase_error(p, 1.0, mu) == pytest.approx(min(0.5, even / (1 - math.exp(-mu))), rel=1e-9)
    assert phase_error(p, 1.0, 0.05) < phase_error(p, 1.0, 0.5)


@pytest.mark.parametrize("eta", [1e-4, 3e-5, 1e-5])
def test_tf_phase_error_counts_every_vacuum_click(eta: float) -> None:
    """Source replacement makes the key qubits' X parity the parity of the photons sent, so a click
    from no photon at all (a dark count) is a phase error with weight 1, not 1/2: with e_d = 0 the
    bound is exactly the even-photon share, vacuum included, plus the dark counts' half-errors on
    odd photon numbers (a closed form over the Poisson weights)."""
    pd, mu = 8e-8, 0.05
    p = TFQKDParams(dark_count_prob_per_detector=pd, misalignment=0.0)
    y0 = 2 * pd

    def weight(k: int) -> float:  # P_mu(k) Y_k
        return math.exp(-mu) * mu**k / math.factorial(k) * (1 - (1 - y0) * (1 - eta) ** k)

    total = sum(weight(k) for k in range(40))
    even = sum(weight(k) for k in range(0, 40, 2)) / total
    odd_errors = sum(math.exp(-mu) * mu**k / math.factorial(k) * y0 / 2 * (1 - eta) ** k
                     for k in range(1, 40, 2)) / total
    vacuum = math.exp(-mu) * y0 / total
    assert 0.01 < vacuum < 0.9  # dark counts matter at these transmittances
    assert phase_error(p, eta, mu) == pytest.approx(min(0.5, even + odd_errors), rel=1e-9)
    assert phase_error(p, eta, mu) >= min(0.5, vacuum)


def test_relay_protocols_reach_further_than_bb84() -> None:
    """MDI-QKD with the LCQ parameters goes beyond 200 km; PM-QKD beyond 350 km; GYS BB84 stops
    before 150 km (Lo, Curty, Qi 2012; Ma, Zeng, Zhou 2018)."""
    assert key_rate("bb84-decoy", 150.0).rate_per_pulse == 0.0
    assert key_rate("mdi-qkd", 210.0).rate_per_pulse > 0.0
    assert key_rate("tf-qkd", 360.0).rate_per_pulse > 0.0
