"""Symbol-level simulation of a GG02 CV-QKD link and its parameter estimation.

Alice draws each symbol's quadratures from N(0, V_A) (shot-noise units); Bob measures one randomly
chosen quadrature by homodyne detection. Through a channel of transmittance T with excess noise
epsilon (referred to the input), a detector of efficiency eta and electronic noise v_el, Bob's value
is y = sqrt(eta T) x + z with z ~ N(0, 1 + eta T epsilon + v_el) (Lodewyck et al., PRA 76, 042305
(2007), sec. II). From a sample of symbols the parties estimate T and epsilon by linear regression
and feed them to the key-rate formula of :mod:`qnet.physics.cvqkd`, taking the pessimistic ends of
their confidence intervals (Lodewyck et al. 2007, sec. V; Leverrier et al., PRA 81, 062343 (2010)).

Reconciliation of continuous variables (multidimensional or slice codes) is not simulated: the
secret fraction reported is the asymptotic rate at the estimated parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from qnet.physics.cvqkd import CVQKDParams, cv_qkd_rate

__all__ = ["CVEstimate", "simulate_cv_qkd"]


@dataclass(frozen=True)
class CVEstimate:
    """What the parties learn from a block of symbols.

    Attributes:
        symbols: symbols sent.
        transmittance: estimated channel transmittance T (worst case of its confidence interval).
        excess_noise: estimated excess noise epsilon (worst case).
        transmittance_true: the channel's actual T.
        rate_per_symbol: key rate at the estimated parameters (bits per symbol).
        rate_true: key rate at the true parameters.
    """

    symbols: int
    transmittance: float
    excess_noise: float
    transmittance_true: float
    rate_per_symbol: float
    rate_true: float


def simulate_cv_qkd(p: CVQKDParams, channel_transmittance: float, *, symbols: int, rng: np.random.Generator,
                    confidence_sigmas: float = 6.5) -> CVEstimate:
    """Send ``symbols`` Gaussian-modulated coherent states, measure them, estimate T and epsilon.

    Args:
        p: device and protocol parameters.
        channel_transmittance: the channel's transmittance.
        symbols: number of symbols (all are used for estimation).
        rng: random generator.
        confidence_sigmas: width of the confidence intervals, in standard deviations
            (6.5 sigma ~ 1e-10 failure probability).
    """
    if symbols < 10:
        raise ValueError(f"need at least 10 symbols, got {symbols!r}")
    t_true, eta = channel_transmittance, p.detector_efficiency
    x = rng.normal(0.0, math.sqrt(p.modulation_variance), symbols)
    noise_var = 1.0 + eta * t_true * p.excess_noise + p.electronic_noise
    y = math.sqrt(eta * t_true) * x + rng.normal(0.0, math.sqrt(noise_var), symbols)
    slope = float(np.dot(x, y) / np.dot(x, x))
    sigma2 = float(np.mean((y - slope * x) ** 2))
    # confidence intervals (Lodewyck et al. 2007, eqs. 20-21)
    d_slope = confidence_sigmas * math.sqrt(sigma2 / (symbols * p.modulation_variance))
    d_sigma2 = confidence_sigmas * sigma2 * math.sqrt(2.0 / symbols)
    t_low = max(slope - d_slope, 1e-300) ** 2 / eta
    eps_high = max((sigma2 + d_sigma2 - 1.0 - p.electronic_noise) / (eta * t_low), 0.0)
    estimated = replace(p, excess_noise=min(eps_high, 10.0))
    return CVEstimate(symbols, t_low, eps_high, t_true,
                      cv_qkd_rate(estimated, t_low).rate_per_pulse, cv_qkd_rate(p, t_true).rate_per_pulse)
