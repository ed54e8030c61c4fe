"""Decoy-state BB84 secret-key rates, asymptotic (infinitely long keys).

The rate in secret bits per pulse sent is the GLLP formula (Gottesman, Lo, Lütkenhaus, Preskill,
Quant. Inf. Comput. 4, 325 (2004)) in the form of Lo, Ma, Chen, PRL 94, 230504 (2005), eq. 1::

    R = q { Q_1 [1 - h(e_1)] - f Q_mu h(E_mu) }

with q the sifting factor, Q_mu and E_mu the gain and QBER of the signal state, and Q_1, e_1 the gain
and error rate of single-photon pulses, which the decoy method bounds:

- ``decoy="infinite"``: Q_1 and e_1 exactly (infinitely many decoys), from the channel model of Lo,
  Ma, Chen (2005): Y_n = 1 - (1 - Y_0)(1 - eta)^n, Q_1 = Y_1 mu e^-mu, e_1 = (e_0 Y_0 + e_d eta)/Y_1.
- ``decoy="vacuum+weak"``: the practical two-decoy bounds of Ma, Qi, Zhao, Lo, PRA 72, 012326
  (2005), eqs. 34 (Y_1 lower bound) and 37 (e_1 upper bound) with a weak decoy ``nu`` and vacuum.
- ``decoy="none"``: GLLP with no decoys: every multi-photon pulse is assumed detected,
  Q_1 >= Q_mu - P_multi with P_multi = 1 - (1 + mu) e^-mu, e_1 <= E_mu Q_mu / Q_1.

The channel model (Ma et al. 2005, eqs. 2-4): Q_mu = 1 - (1 - Y_0) e^(-eta mu),
E_mu Q_mu = e_0 Y_0 + e_d (1 - e^(-eta mu)), e_0 = 1/2, eta = channel x detector transmittance.
After-pulses add clicks with random bits (Lim et al. 2014's model) and dead time scales the rate
(:mod:`qnet.physics.detectors`).

When ``mu`` (and ``nu``) are not given they are chosen to maximise the rate at each transmittance.
The finite-key rate (``block_size`` set) is in :mod:`qnet.physics.finite_key`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from qnet.errors import Problem
from qnet.physics import _params
from qnet.physics._optimise import maximise_1d, maximise_2d
from qnet.physics._params import DEVICE_LIMITS, Choice, Limit, Range
from qnet.physics._types import E0, Decoy
from qnet.physics.detectors import click_probability, live_fraction, with_afterpulses
from qnet.physics.entropy import binary_entropy
from qnet.physics.rates import RatePoint

__all__ = ["BB84Channel", "BB84DecoyParams", "bb84_channel", "bb84_decoy_rate"]




@dataclass(frozen=True, kw_only=True)
class BB84DecoyParams:
    """Device and protocol parameters of a decoy-state BB84 link.

    Defaults are the Gobby-Yuan-Shields experiment (Appl. Phys. Lett. 84, 3762 (2004)) as used by
    Lo, Ma, Chen (2005) and Ma et al. (2005), with a 1 GHz source as in GHz-clocked field systems.

    Attributes:
        attenuation_db_per_km: fibre attenuation (dB/km).
        extra_loss_db: fixed loss on top of the fibre (connectors, free-space optics) (dB).
        detector_efficiency: Bob's total detection efficiency, optics included (eta_Bob).
        dark_count_prob: background click probability per pulse, both detectors (Y_0).
        misalignment: probability that a photon hits the wrong detector (e_d).
        ec_efficiency: error-correction inefficiency f >= 1 (1 is the Shannon limit).
        sifting_factor: fraction of detections kept after basis sifting (q); the finite-key model
            optimises the basis bias itself and does not use it.
        rep_rate_hz: pulses sent per second.
        mu: signal mean photon number; ``None`` optimises it.
        nu: weak-decoy mean photon number (``decoy="vacuum+weak"``); ``None`` optimises it.
        decoy: ``"infinite"``, ``"vacuum+weak"`` or ``"none"``.
        afterpulse_prob: probability that a click causes an after-pulse.
        dead_time_s: detector dead time (s), non-paralysable.
        block_size: sifted key-basis bits per privacy-amplification block (n_X of Lim et al. 2014);
            ``None`` is the asymptotic rate, a number selects the finite-key rate.
        eps_sec: secrecy parameter of the finite-key rate.
        eps_cor: correctness parameter of the finite-key rate.
    """

    attenuation_db_per_km: float = 0.21
    extra_loss_db: float = 0.0
    detector_efficiency: float = 0.045
    dark_count_prob: float = 1.7e-6
    misalignment: float = 0.033
    ec_efficiency: float = 1.22
    sifting_factor: float = 0.5
    rep_rate_hz: float = 1e9
    mu: float | None = None
    nu: float | None = None
    decoy: str = "infinite"
    afterpulse_prob: float = 0.0
    dead_time_s: float = 0.0
    block_size: float | None = None
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15

    LIMITS: ClassVar[Mapping[str, Limit]] = {
        **DEVICE_LIMITS,
        "dark_count_prob": Range(0.0, 0.5, hi_open=True),
        "sifting_factor": Range(0.0, 1.0, lo_open=True),
        "mu": Range(0.0, 20.0, lo_open=True, optional=True),
        "nu": Range(0.0, 20.0, lo_open=True, optional=True),
        "decoy": Choice(tuple(d.value for d in Decoy)),
        "afterpulse_prob": Range(0.0, 1.0, hi_open=True),
        "dead_time_s": Range(0.0),
        "block_size": Range(1e3, optional=True),
        "eps_sec": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "eps_cor": Range(0.0, 1.0, lo_open=True, hi_open=True),
    }

    def __post_init__(self) -> None:
        _params.validate(self)

    def cross_problems(self) -> list[Problem]:
        """Problems between fields: the decoy intensities and what the finite-key model needs."""
        problems = []
        if self.nu is not None and self.decoy != Decoy.VACUUM_WEAK:
            problems.append(Problem("nu", "is the weak decoy of decoy=vacuum+weak; set that or drop nu"))
        if self.nu is not None and self.mu is not None and not self.nu < self.mu:
            problems.append(Problem("nu", f"must be < mu (the weak decoy is weaker than the signal), "
                                          f"got nu={self.nu!r}, mu={self.mu!r}"))
        if self.block_size is not None and self.decoy != Decoy.VACUUM_WEAK:
            problems.append(Problem("decoy", "the finite-key rate (block_size, Lim et al. 2014) is for "
                                             "two decoys: set decoy=vacuum+weak"))
        return problems


@dataclass(frozen=True)
class BB84Channel:
    """What Bob observes for one intensity: gain Q (clicks per pulse) and QBER E."""

    gain: float
    qber: float


def bb84_channel(p: BB84DecoyParams, eta: float, intensity: float, y0: float) -> BB84Channel:
    """Gain and QBER for pulses of mean photon number ``intensity``.

    Ma et al. (2005), eqs. 2-4, with after-pulses as in Lim et al., PRA 89, 022307 (2014), sec. IV:
    a click probability D becomes D (1 + p_ap), the after-pulses erring with probability 1/2.

    Args:
        p: the link's parameters (misalignment and after-pulse probability are used).
        eta: total transmittance, channel times detector.
        intensity: mean photon number of the pulses.
        y0: background click probability per pulse.
    """
    signal = -np.expm1(-eta * intensity)
    clicks = float(click_probability(eta, intensity, y0))
    errors = E0 * y0 + p.misalignment * signal + E0 * p.afterpulse_prob * clicks
    gain = float(with_afterpulses(clicks, p.afterpulse_prob))
    return BB84Channel(gain, float(errors / gain) if gain > 0 else E0)


def _single_photon_bounds(
    p: BB84DecoyParams, eta: float, mu: float, nu: float, y0: float
) -> tuple[float, float]:
    """(Q_1 lower bound, e_1 upper bound) for the chosen decoy method."""
    signal = bb84_channel(p, eta, mu, y0)
    if p.decoy == Decoy.INFINITE:
        clicks = y0 + (1.0 - y0) * eta
        y1 = clicks * (1.0 + p.afterpulse_prob)
        if y1 <= 0:
            return 0.0, E0
        e1 = (E0 * y0 + p.misalignment * eta + E0 * p.afterpulse_prob * clicks) / y1
        return y1 * mu * np.exp(-mu), e1
    if p.decoy == Decoy.NONE:
        q1 = signal.gain - (1.0 - (1.0 + mu) * np.exp(-mu))
        return q1, signal.qber * signal.gain / q1 if q1 > 0 else E0
    return _two_decoy_bounds(p, eta, mu, nu, y0)


def _two_decoy_bounds(p: BB84DecoyParams, eta: float, mu: float, nu: float, y0: float) -> tuple[float, float]:
    """Ma et al. (2005) eqs. 34 and 37 from the gains and errors Bob observes for the signal, the
    weak decoy and the vacuum (whose observed yield includes after-pulses, not only dark counts)."""
    signal, weak = bb84_channel(p, eta, mu, y0), bb84_channel(p, eta, nu, y0)
    vacuum = bb84_channel(p, eta, 0.0, y0).gain
    y1 = (mu / (mu * nu - nu**2)) * (
        weak.gain * np.exp(nu)
        - signal.gain * np.exp(mu) * nu**2 / mu**2
        - (mu**2 - nu**2) / mu**2 * vacuum
    )
    if y1 <= 0:
        return 0.0, E0
    e1 = (weak.qber * weak.gain * np.exp(nu) - E0 * vacuum) / (y1 * nu)
    return y1 * mu * np.exp(-mu), e1


def _rate(p: BB84DecoyParams, eta: float, mu: float, nu: float) -> float:
    """Secret bits per pulse, not clipped at zero (smooth for the optimiser)."""
    y0 = p.dark_count_prob
    signal = bb84_channel(p, eta, mu, y0)
    q1, e1 = _single_photon_bounds(p, eta, mu, nu, y0)
    secret = q1 * (1.0 - binary_entropy(min(e1, 0.5))) if q1 > 0 else q1
    raw = p.sifting_factor * (secret - p.ec_efficiency * signal.gain * binary_entropy(signal.qber))
    return float(raw * live_fraction(signal.gain, p.rep_rate_hz, p.dead_time_s))


def bb84_decoy_rate(p: BB84DecoyParams, channel_transmittance: float) -> RatePoint:
    """Asymptotic secret-key rate of decoy-state BB84 through a channel of given transmittance.

    Args:
        p: device and protocol parameters; ``mu``/``nu`` are optimised when ``None``.
        channel_transmittance: transmittance of the channel alone (detector efficiency is in ``p``).

    Returns:
        The rate in secret bits per pulse (0 when no key can be made), the ``mu`` used and the
        signal QBER.

    Examples:
        >>> point = bb84_decoy_rate(BB84DecoyParams(), 10 ** (-0.21 * 50 / 10))
        >>> round(point.rate_per_pulse, 7)  # Lo, Ma, Chen (2005), 50 km
        0.0002226
    """
    eta = channel_transmittance * p.detector_efficiency
    mu, nu = _choose_intensities(p, eta)
    rate = _rate(p, eta, mu, nu)
    if rate <= 0:
        mu = p.mu if p.mu is not None else 0.5  # report the QBER at a nominal signal
    qber = bb84_channel(p, eta, mu, p.dark_count_prob).qber
    return RatePoint(rate, mu, qber) if rate > 0 else RatePoint(0.0, None, qber)


def _choose_intensities(p: BB84DecoyParams, eta: float) -> tuple[float, float]:
    """The given (mu, nu), or the pair that maximises the rate."""
    if p.decoy != Decoy.VACUUM_WEAK:
        if p.mu is not None:
            return p.mu, 0.0
        return maximise_1d(lambda m: _rate(p, eta, m, 0.0), 1e-4, 1.5), 0.0
    if p.mu is not None and p.nu is not None:
        return p.mu, p.nu
    if p.nu is not None:
        nu = p.nu
        return maximise_1d(lambda m: _rate(p, eta, m, nu), nu * 1.01, max(1.5, nu * 3)), nu
    if p.mu is not None:
        mu = p.mu
        return mu, maximise_1d(lambda n: _rate(p, eta, mu, n), min(1e-4, mu * 0.01), mu * 0.99)
    best = maximise_2d(lambda m, n: _rate(p, eta, m, n * m), (1e-3, 1.5), (1e-3, 0.99))
    return best[0], best[0] * best[1]
