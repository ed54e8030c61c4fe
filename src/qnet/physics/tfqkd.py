"""Twin-field QKD: the phase-matching protocol (PM-QKD), asymptotic with infinitely many decoys.

Alice and Bob send phase-randomised coherent pulses of intensity mu/2 each to an untrusted relay
half-way, where they interfere; one detector click in the right phase slice carries a key bit.
Because only one photon needs to cross half the channel, the rate scales with sqrt(T) and can beat
the repeaterless PLOB bound at long distance; it is bounded instead by the one-relay capacity
-log2(1 - sqrt(T)) (:func:`qnet.physics.bounds.single_repeater_bound`).

Key rate per pulse pair (Ma, Zeng, Zhou, PRX 8, 031043 (2018), eq. 4)::

    R = (2/M) Q_mu [1 - f h(E_Z) - h(E_X)]

with M phase slices. Channel model (ibid., appendix B) with per-arm transmittance eta (detector
efficiency included) and background Y_0 = 2 p_d from the two detectors:

- Y_k = 1 - (1 - Y_0)(1 - eta)^k; Q_mu = 1 - (1 - Y_0) e^(-eta mu)   (eqs. B13-B14)
- e_k Y_k = (Y_0/2)(1 - eta)^k + e_d [1 - (1 - eta)^k]   (eq. B20), so summed over the Poisson
  photon numbers E_Z Q_mu = (Y_0/2) e^(-eta mu) + e_d (1 - e^(-eta mu))
- phase error, infinite decoys (q_k = P_mu(k) Y_k / Q_mu, the share of clicks from k photons)::

      E_X <= sum_{k even, k >= 0} q_k + sum_{k odd} q_k e_k        (*)

Here the summed form of B20 is used for E_Z, which keeps E_Z and the photon-number terms consistent
(the printed B22 agrees with it to first order in eta mu).

Why (*), vacuum included at full weight (the source-replacement parity argument of Ma, Zeng, Zhou,
sec. III; equation numbers of the paper are not re-checked here). Alice's pulse with key bit kappa
is |(-1)^kappa alpha>; replace her choice by a qubit A in (|0>|alpha> + |1>|-alpha>)/sqrt(2). In A's
X basis this is |+>|alpha_even> + |->|alpha_odd>, the even and odd photon-number parts of the
coherent state: A's X value is the parity of the photons Alice sent. The same holds for Bob, so the
parity of X_A + X_B is the parity of the total photon number k = k_A + k_B, fixed at the source
whatever the channel, the relay or Eve do. The key is secure for the clicks where that parity is
odd (k = 1 is the ideal case); a phase error is a click from an even k, and k = 0, a click with no
photon at all (dark count), is even: every vacuum click is a phase error, not half of them (the
earlier q_0/2 was not a bound). Odd k give no phase error in this argument; (*) still charges them
their bit-error rate e_k, an allowance for the discrete phase slices (M finite) that only raises
E_X, taken here because in doubt the larger bound is the safe one. The same parity counting of the
vacuum is in Lin, Lütkenhaus, PRA 98, 042332 (2018) and in the phase-error estimate of Curty,
Azuma, Lo, npj Quantum Inf. 5, 64 (2019), which are tighter for odd k.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.stats import poisson

from qnet.physics import _params
from qnet.physics._optimise import maximise_1d
from qnet.physics._params import DEVICE_LIMITS, Limit, Range
from qnet.physics.entropy import binary_entropy
from qnet.physics.rates import RatePoint

__all__ = ["TFQKDParams", "phase_error", "tf_qkd_rate"]

_KMAX = 40
"""Photon numbers summed in the phase-error bound; P_mu(k > 40) is negligible for mu <= 2."""


@dataclass(frozen=True, kw_only=True)
class TFQKDParams:
    """Device and protocol parameters of a twin-field (phase-matching) QKD link.

    Defaults follow Ma, Zeng, Zhou (2018), Fig. 3: detector efficiency 14.5 %, dark count 8e-8 per
    detector, misalignment 1.5 %, f = 1.15, M = 16 phase slices.

    Attributes:
        attenuation_db_per_km: fibre attenuation (dB/km).
        extra_loss_db: fixed loss on top of the fibre (dB).
        detector_efficiency: efficiency of the relay's detectors.
        dark_count_prob_per_detector: dark-count probability per pulse of each of the relay's two
            detectors (p_d; the background is Y_0 = 2 p_d).
        misalignment: phase misalignment error e_d.
        ec_efficiency: error-correction inefficiency f.
        phase_slices: number of phase slices M (sifting 2/M).
        rep_rate_hz: pulse pairs per second.
        mu: total intensity mu_a + mu_b; ``None`` optimises it.
    """

    attenuation_db_per_km: float = 0.2
    extra_loss_db: float = 0.0
    detector_efficiency: float = 0.145
    dark_count_prob_per_detector: float = 8e-8
    misalignment: float = 0.015
    ec_efficiency: float = 1.15
    phase_slices: float = 16
    rep_rate_hz: float = 1e9
    mu: float | None = None

    LIMITS: ClassVar[Mapping[str, Limit]] = {
        **DEVICE_LIMITS,
        "dark_count_prob_per_detector": Range(0.0, 0.25, hi_open=True),
        "phase_slices": Range(2.0, 1024.0, integer=True),
        "mu": Range(0.0, 2.0, lo_open=True, optional=True),
    }

    def __post_init__(self) -> None:
        _params.validate(self)


def _yields(p: TFQKDParams, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """(Y_k, e_k) for k = 0.._KMAX photons (eqs. B13, B20)."""
    y0 = 2.0 * p.dark_count_prob_per_detector
    survive = (1.0 - eta) ** np.arange(_KMAX + 1)
    yk = 1.0 - (1.0 - y0) * survive
    errors = y0 / 2.0 * survive + p.misalignment * (1.0 - survive)
    ek = np.divide(errors, yk, out=np.full_like(yk, 0.5), where=yk > 0)  # no clicks: e_k irrelevant
    return yk, ek


def phase_error(p: TFQKDParams, eta: float, mu: float) -> float:
    """Upper bound E_X on the phase error, (*) of the module docstring, at most 1/2: every click
    from an even photon number, the vacuum's dark counts included, is a phase error, and odd photon
    numbers are charged their bit-error rate."""
    yk, ek = _yields(p, eta)
    k = np.arange(_KMAX + 1)
    weights = poisson.pmf(k, mu) * yk
    qk = weights / weights.sum()
    odd = k % 2 == 1
    return float(min(0.5, np.sum(qk[~odd]) + np.sum(qk[odd] * ek[odd])))


def _gain_and_qber(p: TFQKDParams, eta: float, mu: float) -> tuple[float, float]:
    y0 = 2.0 * p.dark_count_prob_per_detector
    signal = -np.expm1(-eta * mu)
    gain = y0 + (1.0 - y0) * signal
    errors = y0 / 2.0 * (1.0 - signal) + p.misalignment * signal
    return float(gain), float(errors / gain) if gain > 0 else 0.5


def _rate(p: TFQKDParams, eta: float, mu: float) -> float:
    gain, e_z = _gain_and_qber(p, eta, mu)
    secret = 1.0 - p.ec_efficiency * binary_entropy(e_z) - binary_entropy(phase_error(p, eta, mu))
    return float(2.0 / p.phase_slices * gain * secret)


def tf_qkd_rate(p: TFQKDParams, channel_transmittance: float) -> RatePoint:
    """Asymptotic PM-QKD secret bits per pulse pair through a channel of transmittance T (each arm
    sqrt(T)).

    Examples:
        >>> r = tf_qkd_rate(TFQKDParams(), 10 ** (-0.2 * 100 / 10))
        >>> f"{r.rate_per_pulse:.2e}"
        '7.64e-05'
    """
    eta = float(np.sqrt(channel_transmittance)) * p.detector_efficiency
    if eta <= 0:
        return RatePoint(0.0)
    mu = p.mu if p.mu is not None else maximise_1d(lambda m: _rate(p, eta, m), 1e-3, 2.0)
    rate = _rate(p, eta, mu)
    qber = _gain_and_qber(p, eta, mu)[1]
    return RatePoint(rate, mu, qber) if rate > 0 else RatePoint(0.0, None, qber)
