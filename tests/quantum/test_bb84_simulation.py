"""The photon-level BB84 simulation reproduces the analytic channel model it is built from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qnet.physics.bb84 import BB84DecoyParams, bb84_channel, bb84_channels
from qnet.physics.detectors import live_fraction
from qnet.physics.finite_key import DecoySettings
from qnet.quantum.bb84 import simulate_bb84

SETTINGS = DecoySettings(q_x=0.8, p1=0.5, p2=0.3, mu1=0.5, mu2=0.1)
GYS = BB84DecoyParams()
ETA_50KM = 10 ** (-0.21 * 50 / 10)


@pytest.fixture(scope="module")
def events():  # type: ignore[no-untyped-def]
    return simulate_bb84(GYS, SETTINGS, pulses=10**9, channel_transmittance=ETA_50KM,
                         rng=np.random.default_rng(42))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_gain_per_intensity_matches_analytic(events, k: int) -> None:  # type: ignore[no-untyped-def]
    """Clicks per pulse of each intensity equal Q_mu = 1 - (1 - Y0) e^(-eta mu) within 5 sigma."""
    pulses = 1e9 * SETTINGS.probs[k]
    expected = bb84_channel(GYS, ETA_50KM * GYS.detector_efficiency, SETTINGS.intensities[k], GYS.dark_count_prob).gain
    clicks = int(np.sum(events.intensity == k))
    sigma = math.sqrt(pulses * expected)
    assert abs(clicks - pulses * expected) < 5 * sigma + 5


def test_qber_of_signal_matches_analytic(events) -> None:  # type: ignore[no-untyped-def]
    """The signal's sifted QBER equals E_mu of the channel model within 5 sigma."""
    sifted = (events.intensity == 0) & (events.alice_basis == events.bob_basis)
    errors = int(np.sum(events.alice_bit[sifted] != events.bob_bit[sifted]))
    n = int(sifted.sum())
    expected = bb84_channel(GYS, ETA_50KM * GYS.detector_efficiency, 0.5, GYS.dark_count_prob).qber
    assert abs(errors / n - expected) < 5 * math.sqrt(expected / n)


def test_photon_numbers_of_clicks(events) -> None:  # type: ignore[no-untyped-def]
    """Clicks from signal pulses carry n photons with weight P(n)(1 - (1 - eta)^n): single photons
    make about mu e^-mu eta / Q of them."""
    eta = ETA_50KM * GYS.detector_efficiency
    signal = events.intensity == 0
    single = float(np.mean(events.photons[signal] == 1))
    expected = 0.5 * math.exp(-0.5) * eta / bb84_channel(GYS, eta, 0.5, GYS.dark_count_prob).gain
    assert single == pytest.approx(expected, rel=0.02)


def test_bases_are_balanced_by_q_x(events) -> None:  # type: ignore[no-untyped-def]
    """Alice and Bob choose X with probability q_X, independently."""
    assert float(np.mean(events.alice_basis == 0)) == pytest.approx(0.8, abs=0.005)
    assert float(np.mean(events.alice_basis == events.bob_basis)) == pytest.approx(0.8**2 + 0.2**2, abs=0.005)


def test_same_seed_same_block_other_seed_other_block() -> None:
    """A seed reproduces a block exactly; another seed does not."""
    def run(seed: int):  # type: ignore[no-untyped-def]
        return simulate_bb84(GYS, SETTINGS, pulses=10**7, channel_transmittance=0.5, rng=np.random.default_rng(seed))
    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a.bob_bit, b.bob_bit) and np.array_equal(a.intensity, b.intensity)
    assert a.clicks != c.clicks or not np.array_equal(a.bob_bit, c.bob_bit)


def test_afterpulses_add_random_clicks_and_dead_time_removes_clicks() -> None:
    """After-pulses raise the click count by p_ap (less the gates that had a click); dead time thins
    each detector's clicks by its own live fraction, 1 / (1 + f tau Q / 2) for Bob's pair."""
    base = simulate_bb84(GYS, SETTINGS, pulses=10**8, channel_transmittance=0.5, rng=np.random.default_rng(1))
    ap = simulate_bb84(BB84DecoyParams(afterpulse_prob=0.1), SETTINGS, pulses=10**8, channel_transmittance=0.5,
                       rng=np.random.default_rng(1))
    dead = simulate_bb84(BB84DecoyParams(dead_time_s=1e-5), SETTINGS, pulses=10**8, channel_transmittance=0.5,
                         rng=np.random.default_rng(1))
    q = base.clicks / 1e8
    assert ap.clicks == pytest.approx((1 + 0.1 * (1 - q)) * base.clicks, rel=0.01)
    live = live_fraction(q, 1e9, 1e-5, detectors=2)  # f tau Q = 62: one blind detector per click
    assert abs(dead.clicks - live * base.clicks) < 5 * math.sqrt(live * base.clicks)  # 5 sigma of the thinning


# Lim et al. (2014), sec. IV devices (4 % after-pulses) at 25 km, with a dead time that blinds each
# detector a third of the time: the regime where the intensity mix matters most.
LIM_DEAD = BB84DecoyParams(attenuation_db_per_km=0.2, detector_efficiency=0.1, dark_count_prob=1.2e-6,
                           afterpulse_prob=0.04, misalignment=0.005, dead_time_s=1e-7)
ETA_25KM = 10 ** (-0.2 * 25 / 10)


@pytest.fixture(scope="module")
def lim_events():  # type: ignore[no-untyped-def]
    return simulate_bb84(LIM_DEAD, SETTINGS, pulses=10**8, channel_transmittance=ETA_25KM,
                         rng=np.random.default_rng(25))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_afterpulses_and_dead_time_match_the_analytic_model(lim_events, k: int) -> None:  # type: ignore[no-untyped-def]
    """The simulation and :func:`bb84_channels` are one model (qnet.physics.detectors): per intensity,
    clicks per pulse and sifted QBER agree within 5 sigma. The near-vacuum decoy is the test that
    bites: its clicks are mostly after-pulses of the signal's clicks (the model that scaled each
    intensity's own gain by 1 + p_ap put it 46 times lower), and the dead time is per detector."""
    channel = bb84_channels(LIM_DEAD, ETA_25KM * LIM_DEAD.detector_efficiency, SETTINGS.intensities,
                            SETTINGS.probs)[k]
    pulses = 1e8 * SETTINGS.probs[k]
    clicks = int(np.sum(lim_events.intensity == k))
    assert abs(clicks - pulses * channel.gain) < 5 * math.sqrt(pulses * channel.gain)
    sifted = (lim_events.intensity == k) & (lim_events.alice_basis == lim_events.bob_basis)
    n, errors = int(sifted.sum()), int(np.sum(lim_events.alice_bit[sifted] != lim_events.bob_bit[sifted]))
    assert abs(errors / n - channel.qber) < 5 * math.sqrt(channel.qber * (1 - channel.qber) / n)
