"""Finite-key decoy BB84 (Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014))."""

from __future__ import annotations

import itertools
import math

import pytest

from qnet.physics import BB84DecoyParams, key_rate
from qnet.physics.bb84 import bb84_channel
from qnet.physics.finite_key import MU3, DecoySettings, finite_key_length, finite_key_rate

# The parameters of Lim et al. sec. IV: eta_Bob 10 %, p_dc 6e-7 per detector (Y0 = 1.2e-6),
# after-pulses 4 %, e_mis 0.5 %, f_EC 1.16, 0.2 dB/km.
LIM = {"attenuation_db_per_km": 0.2, "detector_efficiency": 0.1, "dark_count_prob": 1.2e-6,
       "afterpulse_prob": 0.04, "misalignment": 0.005, "ec_efficiency": 1.16, "eps_cor": 1e-15,
       "decoy": "vacuum+weak"}


def test_rate_grows_with_block_size_towards_asymptote() -> None:
    """Larger blocks lose less to statistics; all stay below the asymptotic two-decoy rate of
    efficient BB84 (biased bases: the sifting factor tends to 1 as q_X -> 1)."""
    asym = key_rate("bb84-decoy", 50.0, {**LIM, "sifting_factor": 1.0}).rate_per_pulse
    rates = [key_rate("bb84-decoy", 50.0, {**LIM, "block_size": n}).rate_per_pulse
             for n in (1e5, 1e7, 1e9, 1e13)]
    assert all(a < b for a, b in itertools.pairwise(rates))
    assert rates[-1] < asym
    assert rates[-1] > 0.75 * asym


def test_lim_2014_block_size_ratio_at_100_km() -> None:
    """Lim et al. (2014), sec. IV: at 100 km the key rate for n_X = 1e9 is about 1.75 times that
    for n_X = 1e7 (eps_sec = kappa * l with kappa = 1e-15, i.e. about 1e-9 and 1e-7 here)."""
    r7 = key_rate("bb84-decoy", 100.0, {**LIM, "block_size": 1e7, "eps_sec": 1e-9}).rate_per_pulse
    r9 = key_rate("bb84-decoy", 100.0, {**LIM, "block_size": 1e9, "eps_sec": 1e-7}).rate_per_pulse
    assert r9 / r7 == pytest.approx(1.75, abs=0.1)


def test_small_blocks_shorten_the_reach() -> None:
    """With n_X = 1e4 the reach is well short of the n_X = 1e9 reach (Lim et al. Fig. 1)."""
    assert key_rate("bb84-decoy", 140.0, {**LIM, "block_size": 1e4}).rate_per_pulse == 0.0
    assert key_rate("bb84-decoy", 140.0, {**LIM, "block_size": 1e9}).rate_per_pulse > 0.0


def test_key_length_terms_on_fixed_settings() -> None:
    """Eq. 1 on fixed settings: the block holds exactly n_X X-basis detections, the correctness
    term costs exactly log2(2/eps_cor), and the phase-error bound exceeds the observed error."""
    s = DecoySettings(q_x=0.9, p1=0.6, p2=0.3, mu1=0.5, mu2=0.1)
    eta = 10 ** (-0.2 * 50 / 10) * 0.1
    p15 = BB84DecoyParams(**{**LIM, "block_size": 1e8})  # type: ignore[arg-type]
    p10 = BB84DecoyParams(**{**LIM, "block_size": 1e8, "eps_cor": 1e-10})  # type: ignore[arg-type]
    r15, r10 = finite_key_length(p15, eta, s), finite_key_length(p10, eta, s)
    assert r10.key_length - r15.key_length == pytest.approx(math.log2(1e5), abs=1e-6)
    gains = [bb84_channel(p15, eta, k, p15.dark_count_prob).gain for k in (0.5, 0.1, MU3)]
    detections = r15.pulses * s.q_x**2 * sum(pk * g for pk, g in zip((0.6, 0.3, 0.1), gains, strict=True))
    assert detections == pytest.approx(1e8, rel=1e-9)
    assert r15.qber_x < r15.phase_error < 0.5
    assert 0 < r15.key_length < 1e8


def test_dead_time_scales_the_finite_key_rate() -> None:
    """A detector dead time lowers the finite-key rate as it does the asymptotic one."""
    base = key_rate("bb84-decoy", 50.0, {**LIM, "block_size": 1e8}).rate_per_pulse
    slow = key_rate("bb84-decoy", 50.0, {**LIM, "block_size": 1e8, "dead_time_s": 1e-6}).rate_per_pulse
    assert 0 < slow < base


def test_default_sweep_never_fails() -> None:
    """The whole default sweep (0-200 km) runs for small and large blocks (the optimiser once let a
    basis probability underflow to 0)."""
    for block in (1e4, 1e8):
        for d in range(0, 201, 25):
            assert key_rate("bb84-decoy", float(d), {"decoy": "vacuum+weak", "block_size": block}).rate_per_pulse >= 0


def test_finite_key_needs_block_size() -> None:
    """Calling the finite-key model without a block size is a programmer error, named."""
    with pytest.raises(ValueError, match="block_size"):
        finite_key_rate(BB84DecoyParams(), 0.1)
