"""Finite-key decoy BB84 (Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014))."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qnet.physics import BB84DecoyParams, key_rate
from qnet.physics import finite_key as fk
from qnet.physics._optimise import maximise_rows
from qnet.physics.bb84 import bb84_channels
from qnet.physics.finite_key import (
    MU3,
    DecoySettings,
    finite_key_length,
    finite_key_rate,
    optimal_settings,
    optimal_settings_batch,
)

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


FIG1_REACH_KM = {1e4: (125.0, 150.0), 1e5: (158.0, 176.0), 1e6: (168.0, 186.0), 1e7: (174.0, 191.0),
                 1e8: (177.0, 194.0), 1e9: (179.0, 196.0)}
"""Lim et al. (2014) Fig. 1: each block size n_X it plots -> (a length with key, a length without).

Source: the paper's text gives one curve's end, "even if we use a block size of 10^4, cryptographic
keys can still be distributed over a fiber length of 135 km" (sec. IV): the 1e4 bracket is 135 km
-10 / +15, wide enough for both after-pulse models below. The figure could not be read here, so the
other brackets are qnet's own reaches (``benchmarks/finite_key.py --reach``) +-8 km: they catch a
search that finds no key (as the old one did at 1e4, at every length), not the plot. qnet reaches
145 / 169 / 178 / 183 / 186 / 188 km at eps_sec = 1e-10 and 139 / 167 / 177 / 183 / 186 / 188 at
1e-14; with the paper's after-pulse model (each intensity's clicks times 1 + p_ap, not after-pulses
spread over the mix) it reached 135.3 / 130.1 km at n_X = 1e4. Fig. 1 takes eps_sec = kappa l,
kappa = 1e-15, which qnet does not model: key is checked at eps_sec = 1e-15 (a one-bit key's, the
strictest) and its absence at 1e-10 (the loosest for keys under 10^5 bits), so the curve ends
inside the bracket whatever l is."""


@pytest.mark.parametrize("block", sorted(FIG1_REACH_KM))
def test_lim_2014_fig_1_reach(block: float) -> None:
    """Key well inside each curve of Fig. 1 and none beyond its end (:data:`FIG1_REACH_KM`)."""
    inside, beyond = FIG1_REACH_KM[block]
    assert key_rate("bb84-decoy", inside, {**LIM, "block_size": block, "eps_sec": 1e-15}).rate_per_pulse > 0.0
    assert key_rate("bb84-decoy", beyond, {**LIM, "block_size": block, "eps_sec": 1e-10}).rate_per_pulse == 0.0


def test_lim_2014_fig_1_order() -> None:
    """Fig. 1's curves lie left to right in block size, 1e4 to 1e6 far apart and 1e7 to 1e9 close
    (sec. IV: "only slight differences"); 10^4 bits make key over 135 km of fibre (sec. IV)."""
    params = {**LIM, "eps_sec": 1e-10}
    rates = [key_rate("bb84-decoy", 135.0, {**params, "block_size": n}).rate_per_pulse for n in sorted(FIG1_REACH_KM)]
    assert all(0 < a < b for a, b in itertools.pairwise(rates))
    assert rates[2] / rates[0] > 10 * rates[-1] / rates[3]


def test_search_finds_key_from_where_the_bound_is_zero() -> None:
    """The old failure: at n_X = 1e4 the single-photon bound was zero at every start, so the cost was
    flat, Nelder-Mead never moved and qnet reported no key at any length. From such a start (q_X =
    0.99 leaves the test basis about one detection: s_Z1 = 0) the pattern search climbs the extended
    length to key, and beats the best of 20,000 random settings."""
    p = BB84DecoyParams(**{**LIM, "block_size": 1e4})  # type: ignore[arg-type]
    eta = 10 ** (-0.2 * 60 / 10) * 0.1

    def score(u: np.ndarray, row: np.ndarray) -> np.ndarray:
        return fk._scores(p, np.full(len(u), eta), np.full(len(u), math.nan), fk._decode(u, p))

    start = np.array([[math.log(0.99 / 0.01), 0.0, 0.0, math.log(0.5), 0.0]])
    assert finite_key_length(p, eta, fk._decode(start, p).settings(0)).key_length == -math.inf
    found = fk._decode(maximise_rows(score, 1, start), p).settings(0)
    random = np.random.default_rng(1).uniform([-5, -5, -5, -4, -5], [5, 5, 5, 1, 5], size=(20_000, 5))
    brute = float(np.exp(score(random, np.zeros(len(random), dtype=np.intp)).max()))
    rate = finite_key_length(p, eta, found).rate_per_pulse
    assert rate >= brute > 0
    assert rate == pytest.approx(finite_key_length(p, eta, optimal_settings(p, eta)).rate_per_pulse, rel=1e-3)


def test_batch_search_is_the_single_search() -> None:
    """Searching many transmittances (and block lengths) at once finds what one at a time does."""
    p = BB84DecoyParams(**{**LIM, "block_size": 1e6})  # type: ignore[arg-type]
    etas, pulses = [1e-2, 1e-3, 1e-4], [1e9, 1e10, 1e11]
    assert optimal_settings_batch(p, etas, pulses=pulses) == [
        optimal_settings(p, e, pulses=n) for e, n in zip(etas, pulses, strict=True)]


def test_key_length_terms_on_fixed_settings() -> None:
    """Eq. 1 on fixed settings: the block holds exactly n_X X-basis detections, the correctness
    term costs exactly log2(2/eps_cor), and the phase-error bound exceeds the observed error."""
    s = DecoySettings(q_x=0.9, p1=0.6, p2=0.3, mu1=0.5, mu2=0.1)
    eta = 10 ** (-0.2 * 50 / 10) * 0.1
    p15 = BB84DecoyParams(**{**LIM, "block_size": 1e8})  # type: ignore[arg-type]
    p10 = BB84DecoyParams(**{**LIM, "block_size": 1e8, "eps_cor": 1e-10})  # type: ignore[arg-type]
    r15, r10 = finite_key_length(p15, eta, s), finite_key_length(p10, eta, s)
    assert r10.key_length - r15.key_length == pytest.approx(math.log2(1e5), abs=1e-6)
    gains = [c.gain for c in bb84_channels(p15, eta, (0.5, 0.1, MU3), (0.6, 0.3, 0.1))]
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
