"""MDI-QKD: measurement-device-independent QKD with infinitely many decoys (asymptotic).

Alice and Bob send weak coherent pulses to an untrusted relay (Charlie) half-way, which performs a
Bell-state measurement with four detectors. The secret key rate per pulse pair is
(Lo, Curty, Qi, PRL 108, 130503 (2012), eq. 1)::

    R = Q_11^Z [1 - h(e_11^X)] - f Q_rect h(E_rect),   Q_11^Z = mu_a mu_b e^-(mu_a+mu_b) Y_11

with the key drawn from the rectilinear (Z) basis. The channel model is that of Ma and Razavi, PRA
86, 062319 (2012) (used by Xu, Curty, Qi, Lo, New J. Phys. 15, 113007 (2013)), with per-arm
transmittances eta_a, eta_b (detector efficiency included) and dark-count probability p_d per detector:

- Y_11 = (1-p_d)^2 [eta_a eta_b / 2 + (2 eta_a + 2 eta_b - 3 eta_a eta_b) p_d
  + 4 (1-eta_a)(1-eta_b) p_d^2]   (eq. 21)
- e_11 Y_11 = e_0 Y_11 - (e_0 - e_d)(1-p_d)^2 eta_a eta_b / 2   (eq. 23)
- Q_rect = Q_C + Q_E, E_rect Q_rect = e_d Q_C + (1 - e_d) Q_E   (eqs. 51-54) with
  Q_C = 2(1-p_d)^2 e^(-mu'/2) [1-(1-p_d) e^(-eta_a mu_a/2)] [1-(1-p_d) e^(-eta_b mu_b/2)],
  Q_E = 2 p_d (1-p_d)^2 e^(-mu'/2) [I_0(2x) - (1-p_d) e^(-mu'/2)],
  x = sqrt(eta_a mu_a eta_b mu_b)/2, mu' = eta_a mu_a + eta_b mu_b.

The relay sits in the middle: each arm has transmittance sqrt(T) for a channel of transmittance T.
Alice's and Bob's intensities are equal and optimised when ``mu`` is not given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import i0

from qnet.physics import _params
from qnet.physics._optimise import maximise_1d
from qnet.physics._params import DEVICE_LIMITS, Limit, Range
from qnet.physics._types import E0
from qnet.physics.entropy import binary_entropy
from qnet.physics.rates import RatePoint

__all__ = ["MDIQKDParams", "mdi_qkd_rate", "rectilinear_gain", "single_photon_yield"]



@dataclass(frozen=True, kw_only=True)
class MDIQKDParams:
    """Device and protocol parameters of an MDI-QKD link (relay in the middle).

    Defaults are those of Lo, Curty, Qi (2012), Fig. 2, from the GYS-era experiments: detector
    efficiency 14.5 %, background 6.02e-6 (3.01e-6 per detector), misalignment 1.5 %, f = 1.16.

    Attributes:
        attenuation_db_per_km: fibre attenuation (dB/km).
        extra_loss_db: fixed loss on top of the fibre (dB).
        detector_efficiency: efficiency of Charlie's detectors.
        dark_count_prob_per_detector: dark-count probability per pulse of each of Charlie's four
            detectors (p_d).
        misalignment: probability that a photon reaches the wrong detector (e_d).
        ec_efficiency: error-correction inefficiency f.
        rep_rate_hz: pulse pairs per second.
        mu: signal mean photon number of each of Alice and Bob; ``None`` optimises it.
    """

    attenuation_db_per_km: float = 0.2
    extra_loss_db: float = 0.0
    detector_efficiency: float = 0.145
    dark_count_prob_per_detector: float = 3.01e-6
    misalignment: float = 0.015
    ec_efficiency: float = 1.16
    rep_rate_hz: float = 1e9
    mu: float | None = None

    LIMITS: ClassVar[Mapping[str, Limit]] = {
        **DEVICE_LIMITS,
        "dark_count_prob_per_detector": Range(0.0, 0.5, hi_open=True),
        "mu": Range(0.0, 20.0, lo_open=True, optional=True),
    }

    def __post_init__(self) -> None:
        _params.validate(self)


def single_photon_yield(eta_a: float, eta_b: float, p_d: float, e_d: float) -> tuple[float, float]:
    """(Y_11, e_11): yield and error rate of single-photon pairs (Ma-Razavi eqs. 21, 23)."""
    y11 = (1 - p_d) ** 2 * (eta_a * eta_b / 2 + (2 * eta_a + 2 * eta_b - 3 * eta_a * eta_b) * p_d
                            + 4 * (1 - eta_a) * (1 - eta_b) * p_d**2)
    e11 = E0 - (E0 - e_d) * (1 - p_d) ** 2 * eta_a * eta_b / 2 / y11
    return y11, e11


def rectilinear_gain(mu_a: float, mu_b: float, eta_a: float, eta_b: float, p_d: float,
                     e_d: float) -> tuple[float, float]:
    """(Q_rect, E_rect): gain and QBER of the Z basis (Ma-Razavi eqs. 51-54)."""
    x = np.sqrt(eta_a * mu_a * eta_b * mu_b) / 2
    mu_p = eta_a * mu_a + eta_b * mu_b
    q_c = 2 * (1 - p_d) ** 2 * np.exp(-mu_p / 2) * (1 - (1 - p_d) * np.exp(-eta_a * mu_a / 2)) * (
        1 - (1 - p_d) * np.exp(-eta_b * mu_b / 2))
    q_e = 2 * p_d * (1 - p_d) ** 2 * np.exp(-mu_p / 2) * (i0(2 * x) - (1 - p_d) * np.exp(-mu_p / 2))
    gain = q_c + q_e
    return float(gain), float((e_d * q_c + (1 - e_d) * q_e) / gain)


def _rate(p: MDIQKDParams, eta_arm: float, mu: float) -> float:
    y11, e11 = single_photon_yield(eta_arm, eta_arm, p.dark_count_prob_per_detector, p.misalignment)
    gain, qber = rectilinear_gain(mu, mu, eta_arm, eta_arm, p.dark_count_prob_per_detector, p.misalignment)
    q11 = mu * mu * np.exp(-2 * mu) * y11
    return float(q11 * (1 - binary_entropy(e11)) - p.ec_efficiency * gain * binary_entropy(qber))


def mdi_qkd_rate(p: MDIQKDParams, channel_transmittance: float) -> RatePoint:
    """Asymptotic MDI-QKD secret bits per pulse pair; the channel's transmittance T is split into
    two arms of sqrt(T).

    Examples:
        >>> r = mdi_qkd_rate(MDIQKDParams(), 10 ** (-0.2 * 100 / 10))
        >>> f"{r.rate_per_pulse:.2e}"
        '4.93e-06'
    """
    eta_arm = float(np.sqrt(channel_transmittance)) * p.detector_efficiency
    if eta_arm <= 0:
        return RatePoint(0.0)
    mu = p.mu if p.mu is not None else maximise_1d(lambda m: _rate(p, eta_arm, m), 1e-3, 2.0)
    rate = _rate(p, eta_arm, mu)
    qber = rectilinear_gain(mu, mu, eta_arm, eta_arm, p.dark_count_prob_per_detector, p.misalignment)[1]
    return RatePoint(rate, mu, qber) if rate > 0 else RatePoint(0.0, None, qber)
