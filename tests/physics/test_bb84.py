"""Decoy-state BB84: analytic limits and the behaviour each device parameter must have."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from qnet.errors import ParameterError
from qnet.physics import BB84DecoyParams, bb84_decoy_rate, key_rate
from qnet.physics.bb84 import bb84_channel, bb84_channels, bb84_live_fraction
from qnet.physics.entropy import binary_entropy

T50 = 10 ** (-0.21 * 50 / 10)


def test_channel_model_matches_closed_form() -> None:
    """Gain and QBER follow Ma et al. (2005) eqs. 2-4 exactly when there are no after-pulses."""
    p = BB84DecoyParams()
    eta, mu, y0 = 0.01, 0.5, p.dark_count_prob
    ch = bb84_channel(p, eta, mu, y0)
    gain = y0 + 1 - math.exp(-eta * mu) - y0 * (1 - math.exp(-eta * mu))
    assert ch.gain == pytest.approx(gain, rel=1e-12)
    assert ch.qber * ch.gain == pytest.approx(0.5 * y0 + 0.033 * (1 - math.exp(-eta * mu)), rel=1e-12)


def test_ideal_single_photon_limit() -> None:
    """Noiseless, lossless, perfect error correction: infinite-decoy rate is q mu e^-mu (only the
    single-photon part is secure, and it is error-free)."""
    p = BB84DecoyParams(detector_efficiency=1.0, dark_count_prob=0.0, misalignment=0.0,
                        ec_efficiency=1.0, mu=0.5)
    got = bb84_decoy_rate(p, 1.0).rate_per_pulse
    assert got == pytest.approx(0.5 * 0.5 * math.exp(-0.5), rel=1e-9)


def test_given_mu_is_used_and_optimum_is_a_maximum() -> None:
    """A given mu is used as is; the optimised mu gives at least the rate of any fixed mu."""
    best = bb84_decoy_rate(BB84DecoyParams(), T50)
    assert best.mu is not None
    for mu in (0.1, 0.3, best.mu * 0.9, best.mu * 1.1, 0.8):
        fixed = bb84_decoy_rate(BB84DecoyParams(mu=mu), T50)
        assert fixed.mu == mu
        assert fixed.rate_per_pulse <= best.rate_per_pulse * (1 + 1e-9)


def test_decoy_methods_are_ordered() -> None:
    """Infinite decoys >= vacuum+weak >= no decoys at every distance (the bounds only loosen)."""
    for d in (0.0, 20.0, 60.0, 120.0):
        inf = key_rate("bb84-decoy", d, {"decoy": "infinite"}).rate_per_pulse
        vw = key_rate("bb84-decoy", d, {"decoy": "vacuum+weak"}).rate_per_pulse
        none = key_rate("bb84-decoy", d, {"decoy": "none"}).rate_per_pulse
        assert inf >= vw * (1 - 1e-9) >= none * (1 - 1e-9)


def test_vacuum_weak_approaches_infinite_decoys_as_nu_falls() -> None:
    """Ma et al. (2005): with the weak decoy nu -> 0 the two-decoy bound tends to the exact Y_1."""
    inf = key_rate("bb84-decoy", 100.0, {"decoy": "infinite"}).rate_per_pulse
    gaps = [inf - key_rate("bb84-decoy", 100.0, {"decoy": "vacuum+weak", "nu": nu}).rate_per_pulse
            for nu in (0.2, 0.05, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert gaps[2] / inf < 0.02


@pytest.mark.parametrize(("name", "worse"), [
    ("misalignment", 0.06), ("dark_count_prob", 1e-4), ("ec_efficiency", 1.5),
    ("afterpulse_prob", 0.1), ("dead_time_s", 1e-5),
])
def test_worse_device_lowers_rate(name: str, worse: float) -> None:
    """More misalignment, dark counts, leakage, after-pulses or dead time never raise the rate."""
    base = key_rate("bb84-decoy", 50.0).rate_per_pulse
    assert key_rate("bb84-decoy", 50.0, {name: worse}).rate_per_pulse < base


def test_dead_time_scales_rate_by_live_fraction() -> None:
    """Each of Bob's two detectors is blanked by its own clicks, half of the signal's click rate n
    (asymptotically the decoys are rare): the rate scales by 1/(1 + n tau / 2), not 1/(1 + n tau)."""
    p0 = BB84DecoyParams(mu=0.5)
    p1 = BB84DecoyParams(mu=0.5, dead_time_s=1e-6)
    eta = T50 * p0.detector_efficiency
    clicks = bb84_channel(p0, eta, 0.5, p0.dark_count_prob).gain
    ratio = bb84_decoy_rate(p1, T50).rate_per_pulse / bb84_decoy_rate(p0, T50).rate_per_pulse
    assert ratio == pytest.approx(1 / (1 + clicks * 1e9 * 1e-6 / 2), rel=1e-9)


def test_dead_time_follows_the_mix_of_intensities() -> None:
    """With decoys sent often the detectors see the mix: adding a vacuum share raises the live
    fraction, and every intensity's recorded gain scales by it while its QBER stays."""
    p = BB84DecoyParams(dead_time_s=1e-6, afterpulse_prob=0.04)
    eta = 10 ** (-0.21 * 10 / 10) * p.detector_efficiency
    signal_only = bb84_live_fraction(p, eta, (0.5,), (1.0,))
    mixed = bb84_live_fraction(p, eta, (0.5, 0.0), (0.5, 0.5))
    assert signal_only < mixed < 1.0
    free = bb84_channels(replace(p, dead_time_s=0.0), eta, (0.5, 0.0), (0.5, 0.5))
    dead = bb84_channels(p, eta, (0.5, 0.0), (0.5, 0.5))
    for a, b in zip(free, dead, strict=True):
        assert b.gain == pytest.approx(a.gain * mixed, rel=1e-12)
        assert b.qber == pytest.approx(a.qber, rel=1e-12)


def test_vacuum_weak_without_nu_is_the_nu_to_zero_limit() -> None:
    """The asymptotic two-decoy bound has no optimal nu: it only tightens as nu falls (Ma et al.
    2005, eqs. 34 and 37 tend to the exact Y_1, e_1), so an unset nu gives that limit, the
    infinite-decoy rate, and says so, rather than the lower edge of a search range (nu = 1e-3 mu);
    also with after-pulses, whose yield the vacuum decoy sees."""
    for params in ({}, {"afterpulse_prob": 0.04}, {"mu": 0.4}):
        for d in (20.0, 100.0):
            limit = key_rate("bb84-decoy", d, {**params, "decoy": "vacuum+weak"})
            exact = key_rate("bb84-decoy", d, {**params, "decoy": "infinite"})
            assert limit.rate_per_pulse == pytest.approx(exact.rate_per_pulse, rel=1e-12)
            assert limit.mu == exact.mu
            small = key_rate("bb84-decoy", d, {**params, "decoy": "vacuum+weak", "nu": 1e-3}).rate_per_pulse
            assert small < limit.rate_per_pulse


@pytest.mark.parametrize("afterpulse", [0.0, 0.04, 0.2])
def test_two_decoy_bound_is_below_the_true_single_photon_gain(afterpulse: float) -> None:
    """Ma et al. (2005) eq. 34 is a lower bound on Q_1 = Y_1 mu e^-mu, also with after-pulses
    (the vacuum yield Bob observes then includes them), and eq. 37 an upper bound on e_1."""
    from qnet.physics.bb84 import _single_photon_bounds

    for y0 in (1e-6, 1e-5, 1e-3):
        p_inf = BB84DecoyParams(afterpulse_prob=afterpulse, dark_count_prob=y0)
        p_vw = BB84DecoyParams(afterpulse_prob=afterpulse, dark_count_prob=y0, decoy="vacuum+weak")
        for eta in (1e-1, 1e-3, 1e-4):
            q1, e1 = _single_photon_bounds(p_inf, eta, 0.5, 0.0, y0)
            q1_low, e1_up = _single_photon_bounds(p_vw, eta, 0.5, 0.01, y0)
            assert q1_low <= q1 * (1 + 1e-9)
            assert q1_low <= 0 or e1_up >= e1 * (1 - 1e-6)


@pytest.mark.parametrize(("params", "message"), [
    ({"decoy": "vacuum+weak", "mu": 0.5, "nu": 0.6}, r"nu: must be < mu"),
    ({"decoy": "vacuum+weak", "mu": 0.5, "nu": 0.5}, r"nu: must be < mu"),
    ({"nu": 0.1}, r"nu: is the weak decoy of decoy=vacuum\+weak"),
    ({"block_size": 1e8}, r"decoy: the finite-key rate .* set decoy=vacuum\+weak"),
])
def test_inconsistent_parameters_are_named(params: dict[str, object], message: str) -> None:
    """Problems between fields are reported like problems of one field."""
    with pytest.raises(ParameterError, match=message):
        BB84DecoyParams(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize("params", [
    {"decoy": "vacuum+weak", "nu": 1.49}, {"decoy": "vacuum+weak", "mu": 5e-5}, {"decoy": "vacuum+weak", "nu": 1e-5},
])
def test_extreme_intensities_give_a_rate_not_a_crash(params: dict[str, object]) -> None:
    """Given intensities at the edges of their ranges still give a (possibly zero) rate."""
    assert key_rate("bb84-decoy", 30.0, params).rate_per_pulse >= 0.0


def test_rate_bps_is_rate_per_pulse_times_rep_rate() -> None:
    """rate_bps = rate_per_pulse x rep_rate_hz."""
    point = key_rate("bb84-decoy", 30.0, {"rep_rate_hz": 2e6})
    assert point.rate_bps == pytest.approx(point.rate_per_pulse * 2e6)


def test_no_key_reports_no_mu_and_the_qber() -> None:
    """Beyond the reach the rate is exactly 0, mu is None and the QBER is still reported."""
    point = key_rate("bb84-decoy", 160.0)
    assert point.rate_per_pulse == 0.0 and point.mu is None
    assert point.qber is not None and 0.05 < point.qber <= 0.5


def test_qber_at_zero_distance_is_misalignment() -> None:
    """With negligible dark counts the QBER is the misalignment."""
    assert key_rate("bb84-decoy", 0.0).qber == pytest.approx(0.033, abs=1e-4)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("detector_efficiency", 0.0, r"detector_efficiency: must be in \(0, 1\]"),
    ("misalignment", 0.7, r"misalignment: must be in \[0, 0.5\]"),
    ("decoy", "two", r"decoy: must be one of infinite, vacuum\+weak, none"),
    ("mu", 10**400, r"mu: must be a finite number"),
    ("ec_efficiency", 0.9, r"ec_efficiency: must be >= 1"),
    ("mu", "high", r"mu: must be a number"),
])
def test_bad_parameters_are_named(field: str, value: object, message: str) -> None:
    """Out-of-range parameters raise ParameterError naming the field and the allowed range."""
    with pytest.raises(ParameterError, match=message):
        BB84DecoyParams(**{field: value})  # type: ignore[arg-type]


def test_binary_entropy_is_symmetric_and_bounded() -> None:
    """h(x) = h(1-x), h(1/2) = 1."""
    for x in (0.01, 0.11, 0.3):
        assert binary_entropy(x) == pytest.approx(binary_entropy(1 - x))
    assert binary_entropy(0.5) == 1.0 and binary_entropy(0.0) == 0.0
