"""Units, channels, detectors, geometry: the small pieces everything else stands on."""

from __future__ import annotations

import pytest

from qnet.physics import (
    click_probability,
    fibre_transmittance,
    great_circle_km,
    link_transmittance,
    live_fraction,
    slant_range_km,
    thermal_entropy,
    with_afterpulses,
)
from qnet.physics.channels import channel_loss_db
from qnet.units import db_to_transmittance, parse_duration_s, ps_to_seconds, seconds_to_ps


def test_fibre_transmittance_is_exponential_in_length() -> None:
    """eta(L1 + L2) = eta(L1) eta(L2); 3 dB halves the power."""
    assert fibre_transmittance(30.0, 0.2) == pytest.approx(fibre_transmittance(10.0) * fibre_transmittance(20.0))
    assert link_transmittance(0.0, 0.2, 3.0) == pytest.approx(0.501187, rel=1e-5)


def test_negative_lengths_and_losses_are_rejected() -> None:
    """A negative length or loss is a programmer error naming the value."""
    with pytest.raises(ValueError, match="length_km must be >= 0"):
        channel_loss_db(-1.0, 0.2)
    with pytest.raises(ValueError, match="losses must be >= 0"):
        channel_loss_db(1.0, -0.2)


def test_click_probability_limits() -> None:
    """No light: the background; bright light: certain click; tiny eta*mu stays exact."""
    assert click_probability(0.0, 1.0, 1e-6) == pytest.approx(1e-6)
    assert click_probability(1.0, 50.0, 0.0) == pytest.approx(1.0)
    assert click_probability(1e-12, 1e-6, 0.0) == pytest.approx(1e-18, rel=1e-9)


def test_afterpulses_and_dead_time() -> None:
    """An after-pulse (probability p_ap x the mix's clicks) adds a click only to a gate without one;
    dead time gives the non-paralysable live fraction, of one detector or of each of a pair."""
    assert with_afterpulses(0.01, 0.04) == pytest.approx(0.01 + 0.99 * 0.04 * 0.01, rel=1e-12)
    assert with_afterpulses(1e-6, 0.04, 0.01) == pytest.approx(1e-6 + (1 - 1e-6) * 4e-4, rel=1e-12)
    assert live_fraction(1e-3, 1e9, 1e-6) == pytest.approx(0.5)
    assert live_fraction(1e-3, 1e9, 1e-6, detectors=2) == pytest.approx(1 / 1.5)
    assert live_fraction(1e-3, 1e9, 0.0) == 1.0
    with pytest.raises(ValueError, match="detectors must be >= 1"):
        live_fraction(1e-3, 1e9, 1e-6, detectors=0)


@pytest.mark.parametrize("p_ap", [0.04, 0.5, 0.99])
def test_afterpulses_never_push_a_click_probability_above_one(p_ap: float) -> None:
    """1 - (1 - D)(1 - A) stays a probability (D (1 + p_ap) reached 1.5 at D = 0.75, p_ap = 0.5)."""
    for d in (0.5, 0.75, 0.99, 1.0):
        assert d <= with_afterpulses(d, p_ap) <= 1.0
        assert d <= with_afterpulses(d, p_ap, 1.0) <= 1.0


def test_great_circle_distances() -> None:
    """Tokyo (35.68, 139.77) to Osaka (34.69, 135.50): about 400 km; quarter meridian 10,008 km."""
    assert great_circle_km(35.6812, 139.7671, 34.6937, 135.5023) == pytest.approx(403, abs=3)
    assert great_circle_km(0.0, 0.0, 90.0, 0.0) == pytest.approx(10007.5, abs=1)


def test_slant_range_to_a_satellite_off_zenith_is_longer() -> None:
    """Line of sight to a 500 km satellite: exactly 500 km at zenith, longer when displaced."""
    assert slant_range_km(0, 0, 0, 0, 0, 500) == pytest.approx(500.0)
    assert slant_range_km(0, 0, 0, 5, 0, 500) > 500.0


def test_thermal_entropy_of_vacuum_is_zero() -> None:
    """A pure state (symplectic eigenvalue 1) has no entropy; g grows with the eigenvalue."""
    assert thermal_entropy(1.0) == 0.0
    assert thermal_entropy(3.0) < thermal_entropy(5.0)


def test_units() -> None:
    """dB, picoseconds and durations convert both ways."""
    assert db_to_transmittance(10.0) == pytest.approx(0.1)
    assert ps_to_seconds(seconds_to_ps(2.5)) == 2.5
    assert parse_duration_s("1.5h") == 5400.0 and parse_duration_s("250ms") == 0.25
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s("soon")
