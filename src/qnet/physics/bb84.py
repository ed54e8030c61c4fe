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
  Asymptotically these bounds only tighten as nu falls (Q_nu e^nu = Y_0 + Y_1 nu + O(nu^2), so
  eq. 34 tends to Y_1 and eq. 37 to e_1): there is no optimal nu, only the limit nu -> 0, which is
  the infinite-decoy rate. With ``nu`` unset that limit is what is returned; a practical nu needs
  finite statistics: give ``block_size`` (:mod:`qnet.physics.finite_key` optimises mu_2 against
  its fluctuation terms) or give ``nu``.
- ``decoy="none"``: GLLP with no decoys: every multi-photon pulse is assumed detected,
  Q_1 >= Q_mu - P_multi with P_multi = 1 - (1 + mu) e^-mu, e_1 <= E_mu Q_mu / Q_1.

The channel model (Ma et al. 2005, eqs. 2-4): Q_mu = 1 - (1 - Y_0) e^(-eta mu),
E_mu Q_mu = e_0 Y_0 + e_d (1 - e^(-eta mu)), e_0 = 1/2, eta = channel x detector transmittance.
After-pulses add noise clicks with random bits at a rate set by the mean click probability of the
intensity mix, and each of Bob's two detectors has its own dead time (:mod:`qnet.physics.detectors`;
:func:`bb84_channels` is that model for a mix, shared with :mod:`qnet.quantum.bb84`). The asymptotic
rate sends decoys with a vanishing share of the pulses, so the mix the detectors see is the signal.

When ``mu`` is not given it is chosen to maximise the rate at each transmittance.
The finite-key rate (``block_size`` set) is in :mod:`qnet.physics.finite_key`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from qnet.errors import Problem
from qnet.physics import _params
from qnet.physics._optimise import maximise_1d
from qnet.physics._params import DEVICE_LIMITS, Choice, Limit, Range
from qnet.physics._types import E0, ArrayLike, Decoy
from qnet.physics.detectors import (
    afterpulse_click_probability,
    click_probability,
    live_fraction,
    with_afterpulses,
)
from qnet.physics.entropy import binary_entropy
from qnet.physics.rates import RatePoint

__all__ = [
    "BB84Channel", "BB84DecoyParams", "bb84_channel", "bb84_channels", "bb84_decoy_rate", "bb84_live_fraction",
    "bb84_mix_rates",
]




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


def bb84_channel(p: BB84DecoyParams, eta: float, intensity: float, y0: float, *,
                 mean_clicks: float | None = None) -> BB84Channel:
    """Gain and QBER for pulses of mean photon number ``intensity``, before dead time.

    Ma et al. (2005), eqs. 2-4, with the after-pulses of :mod:`qnet.physics.detectors`: every gate
    holds an after-pulse with probability A = p_ap D_mix, whatever its intensity, erring half the
    time::

        Q = 1 - (1 - D)(1 - A),   E Q = e_0 Y_0 + e_d (1 - e^(-eta mu)) + e_0 (1 - D) A

    with D = 1 - (1 - Y_0) e^(-eta mu) the primary click probability.

    Args:
        p: the link's parameters (misalignment and after-pulse probability are used).
        eta: total transmittance, channel times detector.
        intensity: mean photon number of the pulses.
        y0: background click probability per pulse.
        mean_clicks: primary click probability D_mix averaged over the intensity mix Alice sends;
            ``None`` for a stream of this intensity alone (D_mix = D).
    """
    clicks = float(click_probability(eta, intensity, y0))
    mean = clicks if mean_clicks is None else mean_clicks
    gain, errors = (float(x) for x in _gain_and_errors(p, eta, intensity, clicks, mean))
    return BB84Channel(gain, errors / gain if gain > 0 else E0)


def _gain_and_errors(p: BB84DecoyParams, eta: ArrayLike, intensity: ArrayLike, clicks: ArrayLike,
                     mean_clicks: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """(Q, E Q) of :func:`bb84_channel` from the primary click probability D and the mix's D_mix."""
    ap = afterpulse_click_probability(mean_clicks, p.afterpulse_prob)
    signal = -np.expm1(-np.asarray(eta) * np.asarray(intensity))
    errors = E0 * p.dark_count_prob + p.misalignment * signal + E0 * (1.0 - np.asarray(clicks)) * ap
    return with_afterpulses(clicks, p.afterpulse_prob, mean_clicks), errors


def bb84_mix_rates(p: BB84DecoyParams, eta: ArrayLike, intensities: Sequence[ArrayLike],
                   probs: Sequence[ArrayLike]) -> tuple[list[ArrayLike], list[ArrayLike]]:
    """(clicks, erring clicks) per pulse of each intensity that Bob records when Alice sends the mix
    ``intensities`` with probabilities ``probs``: after-pulses spread over the mix and each
    detector's own dead time (:mod:`qnet.physics.detectors`). Element-wise on arrays (one mix per
    element), for the finite-key search; :func:`bb84_channels` is the same on floats.

    Args:
        p: the link's parameters (Y_0, e_d, p_ap, tau and the repetition rate are used).
        eta: total transmittance, channel times detector.
        intensities: the mean photon numbers Alice sends.
        probs: the probability of each intensity (summing to 1).
    """
    primary = [click_probability(eta, k, p.dark_count_prob) for k in intensities]
    mean = sum((pk * d for pk, d in zip(probs, primary, strict=True)), np.zeros(()))
    rates = [_gain_and_errors(p, eta, k, d, mean) for k, d in zip(intensities, primary, strict=True)]
    mix = sum((pk * g for pk, (g, _) in zip(probs, rates, strict=True)), np.zeros(()))
    live = live_fraction(mix, p.rep_rate_hz, p.dead_time_s, detectors=2)
    return [g * live for g, _ in rates], [e * live for _, e in rates]


def bb84_live_fraction(p: BB84DecoyParams, eta: float, intensities: Sequence[float],
                       probs: Sequence[float]) -> float:
    """Live fraction of each of Bob's two detectors when Alice sends ``intensities`` with
    probabilities ``probs``: 1 / (1 + f tau Q_mix / 2), Q_mix the click probability over the mix
    with after-pulses (:mod:`qnet.physics.detectors`)."""
    before = bb84_mix_rates(replace(p, dead_time_s=0.0), eta, intensities, probs)[0]
    mix = sum(pk * float(g) for pk, g in zip(probs, before, strict=True))
    return float(live_fraction(mix, p.rep_rate_hz, p.dead_time_s, detectors=2))


def bb84_channels(p: BB84DecoyParams, eta: float, intensities: Sequence[float],
                  probs: Sequence[float]) -> tuple[BB84Channel, ...]:
    """What Bob records for each intensity of a mix: clicks per pulse of that intensity and QBER,
    after-pulses and per-detector dead time included (the model the photon-level simulation
    :func:`qnet.quantum.bb84.simulate_bb84` draws from; :func:`bb84_mix_rates` on floats).

    Examples:
        >>> p = BB84DecoyParams(afterpulse_prob=0.04)
        >>> signal, vacuum = bb84_channels(p, 0.01, (0.5, 0.0), (0.9, 0.1))
        >>> f"{vacuum.gain:.2e}"  # p_ap x the mix's clicks: 100 times the dark counts (1.7e-6)
        '1.81e-04'
    """
    gains, errors = bb84_mix_rates(p, eta, intensities, probs)
    pairs = [(float(g), float(e)) for g, e in zip(gains, errors, strict=True)]
    return tuple(BB84Channel(g, e / g if g > 0 else E0) for g, e in pairs)


def _single_photon_bounds(
    p: BB84DecoyParams, eta: float, mu: float, nu: float, y0: float
) -> tuple[float, float]:
    """(Q_1 lower bound, e_1 upper bound) for the chosen decoy method; ``nu = 0`` with two decoys
    is the limit nu -> 0, where eqs. 34 and 37 become exact."""
    signal = bb84_channel(p, eta, mu, y0)
    if p.decoy == Decoy.INFINITE or (p.decoy == Decoy.VACUUM_WEAK and nu <= 0.0):
        return _exact_single_photon(p, eta, mu, y0)
    if p.decoy == Decoy.NONE:
        q1 = signal.gain - (1.0 - (1.0 + mu) * np.exp(-mu))
        return q1, signal.qber * signal.gain / q1 if q1 > 0 else E0
    return _two_decoy_bounds(p, eta, mu, nu, y0)


def _exact_single_photon(p: BB84DecoyParams, eta: float, mu: float, y0: float) -> tuple[float, float]:
    """Q_1 = Y_1 mu e^-mu and e_1 of the channel model (infinitely many decoys), with the
    after-pulses that the signal's clicks cause in single-photon gates."""
    ap = float(afterpulse_click_probability(float(click_probability(eta, mu, y0)), p.afterpulse_prob))
    primary = y0 + (1.0 - y0) * eta
    y1 = 1.0 - (1.0 - primary) * (1.0 - ap)
    if y1 <= 0:
        return 0.0, E0
    e1 = (E0 * y0 + p.misalignment * eta + E0 * (1.0 - primary) * ap) / y1
    return y1 * mu * np.exp(-mu), e1


def _two_decoy_bounds(p: BB84DecoyParams, eta: float, mu: float, nu: float, y0: float) -> tuple[float, float]:
    """Ma et al. (2005) eqs. 34 and 37 from the gains and errors Bob observes for the signal, the
    weak decoy and the vacuum (whose observed yield includes after-pulses, not only dark counts)."""
    mix = float(click_probability(eta, mu, y0))  # the detectors see the signal (decoys are rare)
    signal = bb84_channel(p, eta, mu, y0)
    weak = bb84_channel(p, eta, nu, y0, mean_clicks=mix)
    vacuum = bb84_channel(p, eta, 0.0, y0, mean_clicks=mix).gain
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
    return float(raw * live_fraction(signal.gain, p.rep_rate_hz, p.dead_time_s, detectors=2))


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
    """The given (mu, nu), or mu maximising the rate; an unset nu is the limit nu -> 0 (0.0 here),
    since the asymptotic two-decoy bound has no interior optimum in nu (module docstring)."""
    nu = p.nu if p.decoy == Decoy.VACUUM_WEAK and p.nu is not None else 0.0
    if p.mu is not None:
        return p.mu, nu
    lo, hi = (nu * 1.01, max(1.5, nu * 3)) if nu > 0 else (1e-4, 1.5)
    return maximise_1d(lambda m: _rate(p, eta, m, nu), lo, hi), nu
