"""Photon-level simulation of a decoy-state BB84 link.

Alice sends phase-randomised weak coherent pulses with one of three intensities (signal mu1, weak
decoy mu2, vacuum-like mu3; Lim et al., PRA 89, 022307 (2014)), a random basis (X with probability
q_X) and a random bit. Each pulse carries a Poisson number of photons; each photon survives the
channel and Bob's detector independently (transmittance eta = eta_channel x eta_detector); Bob's
detectors also click on background with probability Y_0 per gate; a photon in the right basis hits
the wrong detector with probability e_d (misalignment); after a click a detector after-pulses with
probability p_ap in a later gate, and a dead time blinds it for tau.

The simulation is exact in distribution and costs time in proportion to the clicks, not the pulses:
the photon-number counts of N pulses are one multinomial draw, the pulses that click are binomial
draws per photon number, and only clicking pulses get bases and bits (the others are discarded by
sifting anyway). 10^9 pulses take about a second. Approximations, stated: a gate with both a photon
click and a background click counts as a photon click (its error is e_d, not 1/2: a correction of
order Y_0 eta). After-pulses and dead time follow the one model of :mod:`qnet.physics.detectors`
(the analytic :func:`qnet.physics.bb84.bb84_channels` is the same model in closed form): a gate of
any intensity that had no click gets an after-pulse with probability p_ap times the block's mean
primary click rate, with a random bit; then each of Bob's two detectors (one per bit value) keeps
its clicks with its own non-paralysable live fraction 1 / (1 + R_d tau), R_d its own click rate in
the block. Thinning click by click at that fraction is the mean-field form of dead time: the
correlation between a click and the gates just after it is not drawn.

Every draw comes from the ``numpy.random.Generator`` passed in, so a seed reproduces a block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qnet.physics.bb84 import BB84DecoyParams
from qnet.physics.detectors import afterpulse_click_probability, live_fraction
from qnet.physics.finite_key import DecoySettings
from qnet.quantum.eve import Eve, EveAttack, signal_click_probabilities

__all__ = ["DetectionEvents", "simulate_bb84"]

X_BASIS, Z_BASIS = 0, 1

U8 = npt.NDArray[np.uint8]
Columns = tuple[U8, U8, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]
"""Per click: intensity index, photons sent, whether a photon caused it, whether Eve knows it."""


@dataclass(frozen=True)
class DetectionEvents:
    """Bob's clicks in one block of pulses, with what Alice, Bob and Eve recorded for each.

    Attributes:
        pulses: pulses Alice sent for the block.
        intensity: 0 signal, 1 weak decoy, 2 vacuum-like decoy (Alice's record, announced later).
        photons: photons in the pulse when it left Alice (0 for background-only clicks).
        alice_basis: 0 = X (key), 1 = Z (test).
        alice_bit: Alice's bit.
        bob_basis: Bob's measurement basis.
        bob_bit: Bob's result.
        eve_knows: whether Eve knows Bob's bit (PNS photons kept, or intercept-resend in Bob's basis).
    """

    pulses: int
    intensity: U8
    photons: U8
    alice_basis: U8 = field(repr=False)
    alice_bit: U8 = field(repr=False)
    bob_basis: U8 = field(repr=False)
    bob_bit: U8 = field(repr=False)
    eve_knows: npt.NDArray[np.bool_] = field(repr=False)

    @property
    def clicks(self) -> int:
        """Number of detection events."""
        return int(self.intensity.size)


def simulate_bb84(
    device: BB84DecoyParams,
    settings: DecoySettings,
    *,
    pulses: int,
    channel_transmittance: float,
    rng: np.random.Generator,
    eve: Eve | None = None,
) -> DetectionEvents:
    """Simulate ``pulses`` pulses of decoy-state BB84 and return Bob's clicks.

    Args:
        device: detector and misalignment parameters (efficiency, Y_0, e_d, p_ap, tau, rep rate).
        settings: intensities, their probabilities and the basis bias q_X.
        pulses: pulses sent (any size: the cost grows with the clicks).
        channel_transmittance: transmittance of the channel alone.
        rng: the random generator; the same seed gives the same block.
        eve: an eavesdropper on the channel, or ``None``.
    """
    if pulses < 0:
        raise ValueError(f"pulses must be >= 0, got {pulses!r}")
    columns, per_intensity = _clicks(device, settings, pulses, channel_transmittance, rng, eve)
    intensity, photons, signal, eve_knows = _afterpulses(device, pulses, per_intensity, columns, rng)
    order = rng.permutation(intensity.size)  # clicks arrive interleaved in time
    intensity, photons, signal, eve_knows = intensity[order], photons[order], signal[order], eve_knows[order]
    events = _measure(device, settings, pulses, intensity, photons, signal, eve_knows, rng, eve)
    return _dead_time(device, events, rng)


def _clicks(device: BB84DecoyParams, settings: DecoySettings, pulses: int, eta_ch: float,
            rng: np.random.Generator, eve: Eve | None) -> tuple[Columns, npt.NDArray[np.int64]]:
    """Which pulses click, by intensity and photon number, and whether each click is a photon's;
    with the pulses sent of each intensity."""
    top = _max_photons(max(settings.intensities))
    n = np.arange(top + 1)
    signal_pmf = _pmf(settings.mu1, top)
    click_n, knows_n = signal_click_probabilities(eve, n, signal_pmf, eta_channel=eta_ch,
                                                  eta_detector=device.detector_efficiency)
    per_intensity = rng.multinomial(pulses, settings.probs)
    labels: list[tuple[int, int, bool, int]] = []  # (intensity, photons, is_signal, count)
    for k, (mu, count) in enumerate(zip(settings.intensities, per_intensity, strict=True)):
        by_photons = rng.multinomial(count, _pmf(mu, top))
        photon_clicks = rng.binomial(by_photons, click_n)
        background = rng.binomial(by_photons - photon_clicks, device.dark_count_prob)
        labels += [(k, int(m), True, int(c)) for m, c in zip(n, photon_clicks, strict=True) if c]
        labels += [(k, int(m), False, int(c)) for m, c in zip(n, background, strict=True) if c]
    counts = np.array([c for *_, c in labels], dtype=np.int64)
    intensity = np.repeat(np.array([lab[0] for lab in labels], dtype=np.uint8), counts)
    photons = np.repeat(np.array([lab[1] for lab in labels], dtype=np.uint8), counts)  # top <= 250
    signal = np.repeat(np.array([lab[2] for lab in labels], dtype=bool), counts)
    knows = signal & knows_n[np.minimum(photons, top)]
    return (intensity, photons, signal, knows), per_intensity


def _max_photons(mu: float) -> int:
    """Largest photon number tracked: the Poisson tail beyond mu + 12 sqrt(mu) + 20 is < 1e-30."""
    return min(250, math.ceil(mu + 12.0 * math.sqrt(mu) + 20.0))


def _pmf(mu: float, top: int) -> npt.NDArray[np.float64]:
    """Poisson photon-number distribution on 0..top, the tail folded into the last bin (in log space,
    numpy only: scipy.stats costs a feeder 1.2 s of import)."""
    if mu <= 0.0:
        return np.eye(1, top + 1, dtype=np.float64)[0]  # type: ignore[no-any-return]
    k = np.arange(top + 1)
    log_factorial = np.concatenate(([0.0], np.cumsum(np.log(k[1:]))))
    pmf = np.exp(k * math.log(mu) - mu - log_factorial)
    pmf[-1] += max(0.0, 1.0 - pmf.sum())
    return pmf / pmf.sum()  # type: ignore[no-any-return]


def _afterpulses(device: BB84DecoyParams, pulses: int, per_intensity: npt.NDArray[np.int64], columns: Columns,
                 rng: np.random.Generator) -> Columns:
    """After-pulse clicks (no photon, random bit later) in the gates of each intensity that had no click:
    each with probability p_ap x the block's primary clicks per pulse, whatever its intensity."""
    if not device.afterpulse_prob or pulses == 0:
        return columns
    intensity, photons, signal, knows = columns
    chance = float(afterpulse_click_probability(intensity.size / pulses, device.afterpulse_prob))
    quiet = per_intensity - np.bincount(intensity, minlength=per_intensity.size)
    extra = rng.binomial(quiet, chance)
    added = int(extra.sum())
    return (np.concatenate([intensity, np.repeat(np.arange(extra.size, dtype=np.uint8), extra)]),
            np.concatenate([photons, np.zeros(added, dtype=np.uint8)]),
            np.concatenate([signal, np.zeros(added, dtype=bool)]),
            np.concatenate([knows, np.zeros(added, dtype=bool)]))


def _dead_time(device: BB84DecoyParams, events: DetectionEvents, rng: np.random.Generator) -> DetectionEvents:
    """Each of Bob's detectors (detector d reports bit d) keeps a click with its own live fraction."""
    if device.dead_time_s <= 0 or events.pulses == 0:
        return events
    rates = np.bincount(events.bob_bit, minlength=2) / events.pulses
    live = np.asarray(live_fraction(rates.astype(np.float64), device.rep_rate_hz, device.dead_time_s))
    keep = rng.random(events.clicks) < live[events.bob_bit]
    return DetectionEvents(events.pulses, events.intensity[keep], events.photons[keep], events.alice_basis[keep],
                           events.alice_bit[keep], events.bob_basis[keep], events.bob_bit[keep],
                           events.eve_knows[keep])


def _measure(device: BB84DecoyParams, settings: DecoySettings, pulses: int, intensity: U8, photons: U8,
             signal: npt.NDArray[np.bool_], knows: npt.NDArray[np.bool_], rng: np.random.Generator,
             eve: Eve | None) -> DetectionEvents:
    """Bases and bits for every click, and what an intercept-resend Eve changes."""
    size = intensity.size
    alice_basis = (rng.random(size) >= settings.q_x).astype(np.uint8)
    bob_basis = (rng.random(size) >= settings.q_x).astype(np.uint8)
    alice_bit = rng.integers(0, 2, size, dtype=np.uint8)
    sent_basis, sent_bit = alice_basis, alice_bit
    if eve is not None and eve.attack is EveAttack.INTERCEPT_RESEND:
        sent_basis, sent_bit, knows = _intercept(eve, signal, alice_basis, alice_bit, bob_basis, rng)
    flip = (rng.random(size) < device.misalignment).astype(np.uint8)
    random_bit = rng.integers(0, 2, size, dtype=np.uint8)
    faithful = signal & (bob_basis == sent_basis)
    bob_bit = np.where(faithful, sent_bit ^ flip, random_bit).astype(np.uint8)
    knows = knows & faithful & (flip == 0)
    return DetectionEvents(pulses, intensity, photons, alice_basis, alice_bit, bob_basis, bob_bit, knows)


def _intercept(eve: Eve, signal: npt.NDArray[np.bool_], alice_basis: U8, alice_bit: U8, bob_basis: U8,
               rng: np.random.Generator) -> tuple[U8, U8, npt.NDArray[np.bool_]]:
    """Eve measures a fraction of the photon pulses in a random basis and resends her result."""
    size = signal.size
    hit = signal & (rng.random(size) < eve.fraction)
    eve_basis = rng.integers(0, 2, size, dtype=np.uint8)
    eve_bit = np.where(eve_basis == alice_basis, alice_bit, rng.integers(0, 2, size, dtype=np.uint8))
    sent_basis = np.where(hit, eve_basis, alice_basis).astype(np.uint8)
    sent_bit = np.where(hit, eve_bit, alice_bit).astype(np.uint8)
    return sent_basis, sent_bit, hit & (bob_basis == eve_basis)
