"""Eavesdroppers are detected: intercept-resend by the QBER, photon-number splitting by the decoys,
and in both cases the chain produces no key."""

from __future__ import annotations

import numpy as np
import pytest

from qnet.physics.finite_key import DecoySettings
from qnet.quantum.bb84 import simulate_bb84
from qnet.quantum.eve import Eve, EveAttack
from qnet.quantum.postprocess.authentication import AuthKeyPool
from qnet.quantum.postprocess.pipeline import PostProcessor
from qnet.quantum.postprocess.sifting import sift
from tests.quantum.conftest import LIM_DEVICE

SETTINGS = DecoySettings(q_x=0.8, p1=0.6, p2=0.3, mu1=0.5, mu2=0.15)


def _run(distance_km: float, eve: Eve | None, pulses: int = 10**9):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    events = simulate_bb84(LIM_DEVICE, SETTINGS, pulses=pulses, channel_transmittance=10 ** (-0.02 * distance_km),
                           rng=rng, eve=eve)
    chain = PostProcessor(LIM_DEVICE, SETTINGS, AuthKeyPool(bytes(64)))
    return events, chain.process(events, rng)


def test_honest_link_makes_key() -> None:
    """The baseline: without Eve the same link yields key at 50 km."""
    _, result = _run(50, None)
    assert result.report.final_bits > 10_000


def test_full_intercept_resend_gives_25_percent_qber_and_no_key() -> None:
    """Intercepting every pulse makes the sifted QBER 25 % (plus misalignment) and no key."""
    events, result = _run(25, Eve(EveAttack.INTERCEPT_RESEND))
    qber = sift(events).true_qber
    assert qber == pytest.approx(0.25 + 0.005 / 2, abs=0.01)
    assert result.report.final_bits == 0 and "QBER" in result.report.aborted


def test_partial_intercept_resend_is_caught_by_the_bounds() -> None:
    """Intercepting 20 % of the pulses raises the QBER to about 5 %: the phase-error bound then
    leaves no key from a 10^9-pulse block at 25 km."""
    events, result = _run(25, Eve(EveAttack.INTERCEPT_RESEND, 0.2))
    assert sift(events).true_qber == pytest.approx(0.05, abs=0.01)
    assert result.report.final_bits == 0


def test_pns_is_exposed_by_the_decoys() -> None:
    """PNS keeps the signal's gain and QBER honest, but the weak decoy loses half its clicks; the
    single-photon bound collapses and no key is made, although Eve knows most of the raw key."""
    honest, _ = _run(50, None)
    events, result = _run(50, Eve(EveAttack.PNS))
    signal_ratio = np.sum(events.intensity == 0) / np.sum(honest.intensity == 0)
    weak_ratio = np.sum(events.intensity == 1) / np.sum(honest.intensity == 1)
    assert signal_ratio == pytest.approx(1.0, abs=0.02)
    assert weak_ratio < 0.7
    assert result.report.single_photon_bits == 0.0 and result.report.final_bits == 0
    assert result.report.eve_knows > 0.9


def test_key_never_exceeds_what_eve_does_not_know() -> None:
    """Where PNS leaves room for key (short link), the final key is smaller than the raw-key bits
    Eve does not know, minus what reconciliation disclosed."""
    events, result = _run(15, Eve(EveAttack.PNS))
    block = sift(events)
    unknown = block.alice.size * (1.0 - block.eve_knows)
    assert result.report.final_bits <= unknown - result.report.leak_ec
