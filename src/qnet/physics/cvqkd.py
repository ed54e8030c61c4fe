"""CV-QKD: the GG02 protocol (Gaussian-modulated coherent states, homodyne detection) with reverse
reconciliation, against collective attacks, with trusted detector noise.

The secret key rate per symbol is K = beta I_AB - chi_BE (Grosshans, Van Assche, Wenger, Brouri,
Cerf, Grangier, Nature 421, 238 (2003)). The formulas below, in shot-noise units, are those of
Lodewyck et al., PRA 76, 042305 (2007), sec. III-IV, and Fossier, Diamanti, Debuisschert, Tualle-
Brouri, Grangier, J. Phys. B 42, 114014 (2009), eqs. 1-9:

- V = V_A + 1; channel transmittance T; excess noise epsilon referred to the channel input;
  detector efficiency eta and electronic noise v_el, both trusted.
- chi_line = 1/T - 1 + epsilon; chi_hom = (1 - eta)/eta + v_el/eta; chi_tot = chi_line + chi_hom/T.
- I_AB = 1/2 log2[(V + chi_tot) / (1 + chi_tot)].
- chi_BE = G(lambda_1) + G(lambda_2) - G(lambda_3) - G(lambda_4) with the symplectic eigenvalues
  lambda_1,2 of Eve's purification of the channel and lambda_3,4 of the state conditioned on Bob's
  measurement (lambda_5 = 1 contributes nothing), G the thermal entropy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import ClassVar

from qnet.physics import _params
from qnet.physics._params import Limit, Range
from qnet.physics.rates import RatePoint

__all__ = ["CVQKDParams", "cv_qkd_rate", "holevo_bound_eve", "mutual_information_ab"]

_DIGITS = 60
"""Decimal digits for the entropy differences (see :func:`_information`)."""


@dataclass(frozen=True, kw_only=True)
class CVQKDParams:
    """Device and protocol parameters of a GG02 CV-QKD link.

    Defaults are a typical parameter set of the literature (e.g. Lodewyck et al. 2007 has
    V_A ~ 18.5, epsilon ~ 0.005, eta = 0.606, v_el = 0.041); here V_A = 4, epsilon = 0.01,
    eta = 0.6, v_el = 0.01, beta = 0.95 over 0.2 dB/km fibre.

    Attributes:
        attenuation_db_per_km: fibre attenuation (dB/km).
        extra_loss_db: fixed loss on top of the fibre (dB).
        modulation_variance: Alice's modulation variance V_A (shot-noise units).
        excess_noise: excess noise epsilon referred to the channel input (shot-noise units).
        detector_efficiency: homodyne detector efficiency eta (trusted).
        electronic_noise: detector electronic noise v_el (shot-noise units, trusted).
        reconciliation_efficiency: beta in (0, 1].
        rep_rate_hz: symbols sent per second.
    """

    attenuation_db_per_km: float = 0.2
    extra_loss_db: float = 0.0
    modulation_variance: float = 4.0
    excess_noise: float = 0.01
    detector_efficiency: float = 0.6
    electronic_noise: float = 0.01
    reconciliation_efficiency: float = 0.95
    rep_rate_hz: float = 1e8

    LIMITS: ClassVar[Mapping[str, Limit]] = {
        "attenuation_db_per_km": Range(0.0),
        "extra_loss_db": Range(0.0),
        "modulation_variance": Range(0.0, 1e6, lo_open=True),
        "excess_noise": Range(0.0, 10.0),
        "detector_efficiency": Range(0.0, 1.0, lo_open=True),
        "electronic_noise": Range(0.0, 10.0),
        "reconciliation_efficiency": Range(0.0, 1.0, lo_open=True),
        "rep_rate_hz": Range(0.0, lo_open=True),
    }

    def __post_init__(self) -> None:
        _params.validate(self)


def _noises(p: CVQKDParams, t: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(chi_line, chi_hom, chi_tot): noise referred to the channel input (SNU)."""
    eta, eps, v_el = Decimal(p.detector_efficiency), Decimal(p.excess_noise), Decimal(p.electronic_noise)
    chi_line = 1 / t - 1 + eps
    chi_hom = (1 - eta) / eta + v_el / eta
    return chi_line, chi_hom, chi_line + chi_hom / t


def _g(nu: Decimal) -> Decimal:
    """Thermal entropy G((nu - 1)/2) in bits (see :func:`qnet.physics.entropy.thermal_entropy`)."""
    x = (nu - 1) / 2
    if x <= 0:
        return Decimal(0)
    return ((x + 1) * (x + 1).ln() - x * x.ln()) / Decimal(2).ln()


def _pair(a: Decimal, b: Decimal) -> tuple[Decimal, Decimal]:
    """Roots lambda_1,2 of lambda^4 - a lambda^2 + b = 0."""
    disc = max(a * a - 4 * b, Decimal(0)).sqrt()
    return ((a + disc) / 2).sqrt(), max((a - disc) / 2, Decimal(0)).sqrt()


def _information(p: CVQKDParams, transmittance: float) -> tuple[Decimal, Decimal]:
    """(I_AB, chi_BE) in bits per symbol, in 60-digit decimal arithmetic (Fossier et al. 2009,
    eqs. 1-9). At high loss chi_BE is a difference of entropies next to the logarithmic singularity
    of G at lambda = 1, which double precision cannot resolve; 60 digits can."""
    t, v = Decimal(transmittance), Decimal(p.modulation_variance) + 1
    chi_line, chi_hom, chi_tot = _noises(p, t)
    i_ab = ((v + chi_tot) / (1 + chi_tot)).ln() / (2 * Decimal(2).ln())
    a = v**2 * (1 - 2 * t) + 2 * t + t**2 * (v + chi_line) ** 2
    b = t**2 * (v * chi_line + 1) ** 2
    c = (a * chi_hom + v * b.sqrt() + t * (v + chi_line)) / (t * (v + chi_tot))
    d = b.sqrt() * (v + b.sqrt() * chi_hom) / (t * (v + chi_tot))
    l1, l2 = _pair(a, b)
    l3, l4 = _pair(c, d)
    return i_ab, _g(l1) + _g(l2) - _g(l3) - _g(l4)


def mutual_information_ab(p: CVQKDParams, transmittance: float) -> float:
    """Alice-Bob mutual information I_AB = 1/2 log2[(V + chi_tot)/(1 + chi_tot)], bits per symbol."""
    with localcontext(prec=_DIGITS):
        return float(_information(p, transmittance)[0])


def holevo_bound_eve(p: CVQKDParams, transmittance: float) -> float:
    """Holevo information chi_BE between Bob's data and Eve (bits per symbol), reverse
    reconciliation, trusted detector noise (Fossier et al. 2009, eqs. 4-9)."""
    with localcontext(prec=_DIGITS):
        return float(_information(p, transmittance)[1])


def cv_qkd_rate(p: CVQKDParams, channel_transmittance: float) -> RatePoint:
    """Asymptotic secret-key rate of GG02 (homodyne, reverse reconciliation) in bits per symbol.

    Examples:
        >>> round(cv_qkd_rate(CVQKDParams(), 10 ** (-0.2 * 25 / 10)).rate_per_pulse, 6)
        0.091627
    """
    if channel_transmittance <= 0.0:
        return RatePoint(0.0)
    with localcontext(prec=_DIGITS):
        i_ab, chi_be = _information(p, channel_transmittance)
        rate = Decimal(p.reconciliation_efficiency) * i_ab - chi_be
    return RatePoint(float(rate) if rate > 0 else 0.0)
