"""The BBM92 model: error rates of Bell-diagonal pairs, sifting, and the asymptotic secret fraction
against closed forms worked out by hand."""

from __future__ import annotations

import math

import pytest

from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.bbm92 import (
    EC_EFFICIENCY,
    expected_secret_bits,
    qber_threshold,
    qber_x,
    qber_z,
    secret_bits_per_pair,
    secret_fraction,
    sifting_probability,
)
from qnet.physics.bell import werner


@pytest.mark.parametrize("fidelity", [1.0, 0.99, 0.97, 0.9, 0.75, 0.25])
def test_werner_qber_is_two_thirds_of_the_infidelity_in_both_bases(fidelity: float) -> None:
    """A Werner pair's three errors have (1-F)/3 each; two of them flip each basis: e = 2(1-F)/3."""
    state = werner(fidelity)
    assert qber_z(state) == pytest.approx(2 * (1 - fidelity) / 3, abs=1e-15)
    assert qber_x(state) == pytest.approx(2 * (1 - fidelity) / 3, abs=1e-15)


def test_each_basis_counts_its_own_errors() -> None:
    """X and Y errors flip ZZ, Z and Y errors flip XX: a pair with only X errors is perfect in X."""
    assert (qber_z((0.9, 0.0, 0.1, 0.0)), qber_x((0.9, 0.0, 0.1, 0.0))) == (0.1, 0.0)
    assert (qber_z((0.9, 0.1, 0.0, 0.0)), qber_x((0.9, 0.1, 0.0, 0.0))) == (0.0, 0.1)
    assert qber_z((0.9, 0.0, 0.0, 0.1)) == qber_x((0.9, 0.0, 0.0, 0.1)) == 0.1


def test_sifting_keeps_half_or_the_biased_share() -> None:
    """Uniform bases agree half the time; a bias q agrees q^2 + (1-q)^2 of it (Lo, Chau, Ardehali)."""
    assert sifting_probability() == 0.5
    assert sifting_probability(0.9) == pytest.approx(0.81 + 0.01)
    with pytest.raises(ValueError, match="basis_bias must be in"):
        sifting_probability(1.0)


def test_secret_fraction_vanishes_at_eleven_percent() -> None:
    """1 - 2 h(e) = 0 at e = 11.0 % (Shor-Preskill): positive just below, zero just above; the Werner
    fidelity there is 1 - 3e/2 = 0.835."""
    threshold = qber_threshold()
    assert threshold == pytest.approx(0.110028, abs=1e-6)
    assert secret_fraction(0.109, 0.109, ec_efficiency=1.0) > 0
    assert secret_fraction(0.111, 0.111, ec_efficiency=1.0) == 0.0
    edge = werner(1 - 1.5 * threshold)
    assert secret_bits_per_pair(edge, ec_efficiency=1.0) == pytest.approx(0.0, abs=1e-9)
    assert qber_threshold(EC_EFFICIENCY) < threshold  # error correction above the Shannon limit costs key


def test_secret_fraction_at_f097_by_hand() -> None:
    """F = 0.97: e_Z = e_X = 2(0.03)/3 = 0.02; h(0.02) = -0.02 log2 0.02 - 0.98 log2 0.98
    = 0.02 (5.643856) + 0.98 (0.029146) = 0.141441; r = 1 - h(e_X) - f h(e_Z) is 1 - 2(0.141441)
    = 0.717119 at the Shannon limit and 1 - 2.16 (0.141441) = 0.694488 at f = 1.16; half the pairs
    are sifted, so a pair gives 0.347244 bits."""
    e = 2 * (1 - 0.97) / 3
    h = -e * math.log2(e) - (1 - e) * math.log2(1 - e)
    assert h == pytest.approx(0.141441, abs=1e-6)
    assert secret_fraction(qber_z(werner(0.97)), qber_x(werner(0.97)), ec_efficiency=1.0) == pytest.approx(
        1 - 2 * h, rel=1e-12)
    assert secret_fraction(0.02, 0.02) == pytest.approx(0.694488, abs=1e-6)
    assert secret_bits_per_pair(werner(0.97)) == pytest.approx(0.347244, abs=1e-6)


def test_default_efficiency_is_the_one_qnet_models_use() -> None:
    """f = 1.16, as MDI-QKD's model; decoy BB84's default device (GYS) keeps its own 1.22."""
    from qnet.physics.mdiqkd import MDIQKDParams

    assert EC_EFFICIENCY == MDIQKDParams().ec_efficiency == 1.16
    assert BB84DecoyParams().ec_efficiency == 1.22


def test_biased_bases_key_from_both_with_their_own_error_rates() -> None:
    """Z-Z rounds (q^2) give Z key bits, which pay h(e_Z) for correction and h(e_X) for privacy;
    X-X rounds ((1-q)^2) the reverse, so keying mostly in the basis without errors saves what error
    correction's inefficiency costs."""
    state = (0.95, 0.0, 0.05, 0.0)  # X errors: e_Z = 0.05, e_X = 0
    q = 0.9
    h = -0.05 * math.log2(0.05) - 0.95 * math.log2(0.95)
    by_hand = q**2 * (1 - 1.16 * h) + (1 - q) ** 2 * (1 - h)
    assert secret_bits_per_pair(state, basis_bias=q) == pytest.approx(by_hand, rel=1e-12)
    assert secret_bits_per_pair(state, basis_bias=1 - q) > secret_bits_per_pair(state, basis_bias=q)


def test_a_stream_is_keyed_at_its_mean_state() -> None:
    """Pairs post-processed together give the key of their mean state, less than the sum of each
    pair's own (h is concave) unless they are all alike."""
    mixed = [werner(1.0), werner(0.94)] * 500
    assert expected_secret_bits(mixed) == pytest.approx(1000 * secret_bits_per_pair(werner(0.97)), rel=1e-12)
    assert expected_secret_bits(mixed) < 500 * (secret_bits_per_pair(werner(1.0)) + secret_bits_per_pair(werner(0.94)))
    assert expected_secret_bits([]) == 0.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: secret_fraction(0.02, 0.02, ec_efficiency=0.9), "ec_efficiency must be >= 1"),
    (lambda: secret_fraction(-0.1, 0.02), "e_key must be in"),
    (lambda: qber_z((0.5, 0.5, 0.5, 0.5)), "four probabilities"),
])
def test_bad_inputs_are_named(call: object, message: str) -> None:
    """Programmer errors raise ValueError naming the bad value."""
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
