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

__all__ = ["MIN_SYMBOLS", "CVEstimate", "simulate_cv_qkd"]

MIN_SYMBOLS = 10
_CHUNK = 1 << 22


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
    if symbols < MIN_SYMBOLS:
        raise ValueError(f"need at least {MIN_SYMBOLS} symbols, got {symbols!r}")
    t_true, eta = channel_transmittance, p.detector_efficiency
    sxx, sxy, syy = _moments(p, t_true, symbols, rng)
    slope = sxy / sxx
    sigma2 = max((syy - 2.0 * slope * sxy + slope * slope * sxx) / symbols, 0.0)
    # confidence intervals (Lodewyck et al. 2007, eqs. 20-21)
    d_slope = confidence_sigmas * math.sqrt(sigma2 / (symbols * p.modulation_variance))
    d_sigma2 = confidence_sigmas * sigma2 * math.sqrt(2.0 / symbols)
    true_rate = cv_qkd_rate(p, t_true).rate_per_pulse
    if slope - d_slope <= 0.0:  # the channel cannot be told from no channel: no key
        return CVEstimate(symbols, 0.0, math.inf, t_true, 0.0, true_rate)
    t_low = (slope - d_slope) ** 2 / eta
    eps_high = max((sigma2 + d_sigma2 - 1.0 - p.electronic_noise) / (eta * t_low), 0.0)
    if eps_high > 10.0:
        return CVEstimate(symbols, t_low, eps_high, t_true, 0.0, true_rate)
    estimated = replace(p, excess_noise=eps_high)
    return CVEstimate(symbols, t_low, eps_high, t_true, cv_qkd_rate(estimated, t_low).rate_per_pulse, true_rate)


def _moments(p: CVQKDParams, t: float, symbols: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Sums of x^2, x y and y^2 over the symbols, drawn in chunks so that memory stays small."""
    eta = p.detector_efficiency
    noise = math.sqrt(1.0 + eta * t * p.excess_noise + p.electronic_noise)
    sxx = sxy = syy = 0.0
    for start in range(0, symbols, _CHUNK):
        size = min(_CHUNK, symbols - start)
        x = rng.normal(0.0, math.sqrt(p.modulation_variance), size)
        y = math.sqrt(eta * t) * x + rng.normal(0.0, noise, size)
        sxx, sxy, syy = sxx + float(x @ x), sxy + float(x @ y), syy + float(y @ y)
    return sxx, sxy, syy
