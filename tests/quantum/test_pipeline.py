"""The whole chain: identical keys at both ends, and the key length the finite-key theory predicts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from qnet.physics.finite_key import key_length_for_pulses, optimal_settings
from qnet.quantum.bb84 import simulate_bb84
from qnet.quantum.postprocess.authentication import AuthKeyPool
from qnet.quantum.postprocess.pipeline import ChainConfig, PostProcessor, Reconciler
from tests.quantum.conftest import LIM_DEVICE

SHORT = replace(LIM_DEVICE, detector_efficiency=0.5)  # a good detector: plenty of key per block
SHORT_SETTINGS = optimal_settings(replace(SHORT, block_size=1e6), 0.5 * 10 ** (-0.02 * 10), pulses=3e6)


def test_hundred_random_blocks_give_identical_keys() -> None:
    """100 blocks with random lengths, distances and seeds: every block yields key, bit-identical at
    both ends, and the authentication pool never runs dry."""
    rng = np.random.default_rng(2024)
    settings = SHORT_SETTINGS
    pool = AuthKeyPool(bytes(range(64)))
    chain = PostProcessor(SHORT, settings, pool, ChainConfig(frame_bits=1 << 16))
    made = 0
    for _ in range(100):
        distance = float(rng.uniform(0, 20))
        pulses = int(rng.integers(2 * 10**6, 5 * 10**6))
        events = simulate_bb84(SHORT, settings, pulses=pulses, channel_transmittance=10 ** (-0.02 * distance), rng=rng)
        result = chain.process(events, rng)
        assert result.report.final_bits > 0, result.report.aborted
        assert np.array_equal(result.alice_key, result.bob_key)
        made += result.alice_key.size
    assert made > 10**5 and pool.available_bits > 0


@pytest.mark.parametrize("distance_km", [25.0, 50.0])
def test_final_key_matches_analytic_finite_key_rate(distance_km: float) -> None:
    """For 10^9-pulse blocks the key length per pulse of the simulated chain is within 10 % of the
    analytic finite-key rate (Lim et al. 2014) for the same settings and the same reconciliation
    efficiency (seeded)."""
    eta_ch = 10 ** (-0.02 * distance_km)
    eta = eta_ch * LIM_DEVICE.detector_efficiency
    settings = optimal_settings(replace(LIM_DEVICE, block_size=1e6), eta, pulses=1e9)
    rng = np.random.default_rng(7)
    events = simulate_bb84(LIM_DEVICE, settings, pulses=10**9, channel_transmittance=eta_ch, rng=rng)
    report = PostProcessor(LIM_DEVICE, settings, AuthKeyPool(bytes(64))).process(events, rng).report
    analytic = key_length_for_pulses(replace(LIM_DEVICE, ec_efficiency=report.ec_efficiency), eta, settings, 1e9)
    assert report.final_bits / 1e9 == pytest.approx(analytic.key_length / 1e9, rel=0.10)


def test_polar_chain_also_gives_identical_keys() -> None:
    """With one-way polar reconciliation the keys are identical too (failed frames are dropped)."""
    rng = np.random.default_rng(5)
    settings = SHORT_SETTINGS
    chain = PostProcessor(SHORT, settings, AuthKeyPool(bytes(64)), ChainConfig(reconciler=Reconciler.POLAR,
                                                                                frame_bits=1 << 14))
    events = simulate_bb84(SHORT, settings, pulses=3 * 10**7, channel_transmittance=0.5, rng=rng)
    result = chain.process(events, rng)
    assert result.report.frames >= 10 and result.report.final_bits > 0
    assert np.array_equal(result.alice_key, result.bob_key)


def test_failed_frames_are_dropped_not_delivered() -> None:
    """A deliberately hopeless polar design (target FER 0.99) fails frames; they are dropped and
    what remains is still identical."""
    rng = np.random.default_rng(6)
    settings = SHORT_SETTINGS
    config = ChainConfig(reconciler=Reconciler.POLAR, frame_bits=1 << 12, polar_target_fer=50.0)
    events = simulate_bb84(SHORT, settings, pulses=2 * 10**7, channel_transmittance=0.5, rng=rng)
    result = PostProcessor(SHORT, settings, AuthKeyPool(bytes(64)), config).process(events, rng)
    assert result.report.frames_failed > 0
    assert np.array_equal(result.alice_key, result.bob_key)


def test_exhausted_authentication_pool_stops_the_block_cleanly() -> None:
    """With the pool drained, a block is refused ("authentication key pool exhausted"), not crashed."""
    rng = np.random.default_rng(8)
    pool = AuthKeyPool(bytes(48))  # the hash point and one pair of pads
    chain = PostProcessor(SHORT, SHORT_SETTINGS, pool)
    events = simulate_bb84(SHORT, SHORT_SETTINGS, pulses=3 * 10**6, channel_transmittance=0.5, rng=rng)
    pool.mac_keys(2)  # someone else spent the pads
    result = chain.process(events, rng)
    assert result.report.aborted == "authentication key pool exhausted" and result.alice_key.size == 0


def test_a_block_without_errors_still_makes_key() -> None:
    """No observed error (no misalignment, no dark counts) must not void the phase-error bound."""
    clean = replace(SHORT, misalignment=0.0, dark_count_prob=0.0)
    rng = np.random.default_rng(9)
    events = simulate_bb84(clean, SHORT_SETTINGS, pulses=3 * 10**6, channel_transmittance=0.5, rng=rng)
    result = PostProcessor(clean, SHORT_SETTINGS, AuthKeyPool(bytes(64))).process(events, rng)
    assert result.report.qber == 0.0 and result.report.final_bits > 0


def test_dropped_frames_cost_their_bits_in_full() -> None:
    """Every raw-key bit of a dropped frame comes off the final length (chain rule), on top of
    the leak its reconciliation already disclosed."""
    rng = np.random.default_rng(10)
    events = simulate_bb84(SHORT, SHORT_SETTINGS, pulses=3 * 10**6, channel_transmittance=0.5, rng=rng)
    chain = PostProcessor(SHORT, SHORT_SETTINGS, AuthKeyPool(bytes(64)))
    from qnet.quantum.postprocess.estimation import estimate
    from qnet.quantum.postprocess.sifting import sift

    report = chain.process(events, rng).report
    est = estimate(sift(events))
    full = chain._final_length(est, report.leak_ec, dropped=0)
    assert report.frames_failed == 0 and full == report.final_bits > 10_000
    assert chain._final_length(est, report.leak_ec, dropped=5_000) == full - 5_000


def test_privacy_amplification_seed_is_fresh_randomness() -> None:
    """The same seeded block gives keys of the same length but different bits: the Toeplitz seed
    comes from the operating system's CSPRNG, not from the simulation's seed."""
    def run() -> np.ndarray:
        rng = np.random.default_rng(11)
        events = simulate_bb84(SHORT, SHORT_SETTINGS, pulses=3 * 10**6, channel_transmittance=0.5, rng=rng)
        return PostProcessor(SHORT, SHORT_SETTINGS, AuthKeyPool(bytes(64))).process(events, rng).alice_key
    a, b = run(), run()
    assert a.size == b.size > 0 and not np.array_equal(a, b)
