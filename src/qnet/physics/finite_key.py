"""Finite-key secret-key length of decoy-state BB84 with two decoys.

Lim, Curty, Walenta, Xu, Zbinden, "Concise security bounds for practical decoy-state quantum key
distribution", PRA 89, 022307 (2014). Alice sends intensities mu_1 > mu_2 + mu_3, mu_2 > mu_3 >= 0
with probabilities p_k, in the X basis with probability q_X (also Bob's); the key is drawn from the
X basis. With n_X sifted X-basis detections (the block size) the secret key is (eq. 1)::

    l = s_X0 + s_X1 (1 - h(phi_X)) - lambda_EC - 6 log2(21/eps_sec) - log2(2/eps_cor)

- Hoeffding bounds on the expected counts per intensity (eq. 3):
  n_k^± = (e^k / p_k) (n_k ± delta(n, eps_sec/21)), delta = sqrt(n/2 ln(21/eps_sec)).
- vacuum events s_0 >= tau_0 (mu_2 n_3^- - mu_3 n_2^+)/(mu_2 - mu_3) (eq. 2),
  single-photon events s_1 (eq. 3), single-photon errors v_Z1 in Z (eq. 4),
  tau_n = sum_k p_k e^-k k^n / n!.
- phase error phi_X <= v_Z1/s_Z1 + gamma(eps_sec/21, v_Z1/s_Z1, s_Z1, s_X1) (eq. 5).
- lambda_EC = f n_X h(E_X).

The observed counts come from the channel model of sec. IV with the after-pulsing model of
:mod:`qnet.physics.bb84`. The intensities mu_1, mu_2 (``mu``, ``nu``), the probabilities and the basis
bias q_X are optimised for the largest rate l / N per pulse sent, unless ``mu``/``nu`` are given;
mu_3 is fixed at 2e-4 as in the paper. The basis bias replaces the asymptotic model's sifting factor,
and a detector dead time scales the rate as in :mod:`qnet.physics.bb84`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qnet.physics._types import E0
from qnet.physics.bb84 import BB84DecoyParams, bb84_channel
from qnet.physics.detectors import live_fraction
from qnet.physics.entropy import binary_entropy
from qnet.physics.rates import RatePoint

__all__ = [
    "MU3",
    "BasisCounts",
    "DecoySettings",
    "FiniteKeyResult",
    "expected_counts",
    "finite_key_length",
    "finite_key_rate",
    "key_length_for_pulses",
    "optimal_settings",
    "pulses_for_block",
    "secret_key_length",
    "vacuum_and_single_bounds",
]

MU3 = 2e-4
"""Intensity of the vacuum-like decoy, fixed as in Lim et al. (2014), sec. IV."""

_PENALTY = 50.0


@dataclass(frozen=True)
class FiniteKeyResult:
    """The outcome of one finite-key evaluation.

    Attributes:
        key_length: secret bits l from one block (may be negative: no key).
        pulses: pulses sent N to collect the block of n_X sifted X-basis bits.
        qber_x: the X-basis error rate E_X.
        phase_error: the upper bound phi_X on the single-photon phase error rate.
    """

    key_length: float
    pulses: float
    qber_x: float
    phase_error: float

    @property
    def rate_per_pulse(self) -> float:
        """l / N, or 0 when no key is made."""
        return max(self.key_length, 0.0) / self.pulses


@dataclass(frozen=True)
class DecoySettings:
    """The free settings of the three-intensity protocol: basis bias, intensity probabilities and
    intensities (mu_3 is fixed at :data:`MU3`).

    Attributes:
        q_x: probability that Alice (and Bob) choose the key basis X.
        p1: probability of the signal intensity mu1.
        p2: probability of the weak decoy mu2 (the vacuum-like mu3 has the rest).
        mu1: signal mean photon number.
        mu2: weak-decoy mean photon number.
    """

    q_x: float
    p1: float
    p2: float
    mu1: float
    mu2: float

    @property
    def intensities(self) -> tuple[float, float, float]:
        """(mu1, mu2, mu3)."""
        return self.mu1, self.mu2, MU3

    @property
    def probs(self) -> tuple[float, float, float]:
        """(p1, p2, p3)."""
        return self.p1, self.p2, 1.0 - self.p1 - self.p2

    def valid(self) -> bool:
        """Whether the settings meet the protocol's constraints (mu1 > mu2 + mu3, mu2 > mu3, ...)."""
        return (self.p1 > 0 and self.p2 > 0 and self.p1 + self.p2 < 1 and 0 < self.q_x < 1
                and self.mu2 > MU3 and self.mu1 > self.mu2 + MU3)


@dataclass(frozen=True)
class BasisCounts:
    """What one basis showed in one block: detections and errors per intensity (mu1, mu2, mu3)."""

    detections: tuple[float, float, float]
    errors: tuple[float, float, float]

    @property
    def total(self) -> float:
        """All detections of this basis."""
        return float(sum(self.detections))

    @property
    def error_rate(self) -> float:
        """Errors over detections (1/2 when there are none)."""
        return float(sum(self.errors)) / self.total if self.total > 0 else E0


def _tau(s: DecoySettings, n: int) -> float:
    """Probability that a pulse carries n photons, over the intensity mixture."""
    return sum(p * math.exp(-k) * k**n / math.factorial(n) for p, k in zip(s.probs, s.intensities, strict=True))


def _hoeffding(s: DecoySettings, counts: tuple[float, ...], eps: float) -> tuple[list[float], list[float]]:
    """(n_k^+, n_k^-): deviation bounds on the expected counts per intensity, rescaled by e^k/p_k."""
    delta = math.sqrt(sum(counts) / 2.0 * math.log(21.0 / eps))
    scale = [math.exp(k) / p for k, p in zip(s.intensities, s.probs, strict=True)]
    return ([c * (n + delta) for c, n in zip(scale, counts, strict=True)],
            [c * (n - delta) for c, n in zip(scale, counts, strict=True)])


def vacuum_and_single_bounds(s: DecoySettings, counts: tuple[float, ...], eps: float) -> tuple[float, float]:
    """Lower bounds (s_0, s_1) on vacuum and single-photon detections (Lim et al. eqs. 2-3)."""
    mu1, mu2, mu3 = s.intensities
    plus, minus = _hoeffding(s, counts, eps)
    t0, t1 = _tau(s, 0), _tau(s, 1)
    s0 = max(0.0, t0 * (mu2 * minus[2] - mu3 * plus[1]) / (mu2 - mu3))
    s1 = t1 * mu1 * (minus[1] - plus[2] - (mu2**2 - mu3**2) / mu1**2 * (plus[0] - s0 / t0)) / (
        mu1 * (mu2 - mu3) - mu2**2 + mu3**2
    )
    return s0, max(0.0, s1)


def _gamma(eps: float, b: float, c: float, d: float) -> float:
    """The phase-error deviation term gamma(a, b, c, d) of Lim et al. eq. 5, with a = eps_sec
    (the paper's 21^2 / a^2 inside the logarithm)."""
    if not 0.0 < b < 1.0:
        return 0.5
    arg = (c + d) / (c * d * (1.0 - b) * b) * (21.0 / eps) ** 2
    return math.sqrt((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * math.log2(arg)) if arg > 1 else 0.0


def secret_key_length(x: BasisCounts, z: BasisCounts, s: DecoySettings, *, leak_ec: float,
                      eps_sec: float, eps_cor: float, pulses: float = math.nan) -> FiniteKeyResult:
    """Lim et al. (2014) eq. 1 from the counts of one block, expected or observed.

    Args:
        x: key-basis detections per intensity (their errors give E_X).
        z: test-basis detections and errors per intensity (they bound the phase error).
        s: the settings the block was sent with.
        leak_ec: bits revealed by error correction (lambda_EC).
        eps_sec: secrecy parameter.
        eps_cor: correctness parameter.
        pulses: pulses sent for the block (only carried into the result).
    """
    sx0, sx1 = vacuum_and_single_bounds(s, x.detections, eps_sec)
    _sz0, sz1 = vacuum_and_single_bounds(s, z.detections, eps_sec)
    if sx1 <= 0 or sz1 <= 0:
        return FiniteKeyResult(-math.inf, pulses, x.error_rate, E0)
    m_plus, m_minus = _hoeffding(s, z.errors, eps_sec)
    vz1 = _tau(s, 1) * (m_plus[1] - m_minus[2]) / (s.mu2 - MU3)
    ratio = max(vz1 / sz1, 0.0)
    # gamma vanishes as its error-rate argument b -> 0, an artefact of its approximations: with no
    # observed error, use the rate one error would give, so that the sampling term stays positive
    phi = min(0.5, ratio + _gamma(eps_sec, max(ratio, 1.0 / sz1), sz1, sx1))
    length = (sx0 + sx1 * (1.0 - float(binary_entropy(phi))) - leak_ec
              - 6.0 * math.log2(21.0 / eps_sec) - math.log2(2.0 / eps_cor))
    return FiniteKeyResult(length, pulses, x.error_rate, phi)


def expected_counts(p: BB84DecoyParams, eta: float, s: DecoySettings, pulses: float) -> tuple[BasisCounts, BasisCounts]:
    """Expected (X, Z) counts of ``pulses`` pulses through total transmittance ``eta``
    (the channel model of :func:`qnet.physics.bb84.bb84_channel`)."""
    channels = [bb84_channel(p, eta, k, p.dark_count_prob) for k in s.intensities]

    def basis(q: float) -> BasisCounts:
        n = tuple(pulses * q * q * pk * c.gain for pk, c in zip(s.probs, channels, strict=True))
        m = tuple(nk * c.qber for nk, c in zip(n, channels, strict=True))
        return BasisCounts(n, m)  # type: ignore[arg-type]

    return basis(s.q_x), basis(1.0 - s.q_x)


def pulses_for_block(p: BB84DecoyParams, eta: float, s: DecoySettings, n_x: float) -> float:
    """Pulses needed, on average, to collect ``n_x`` key-basis detections (inf if none arrive)."""
    x_rate = expected_counts(p, eta, s, 1.0)[0].total
    return n_x / x_rate if x_rate > 0 else math.inf


def finite_key_length(p: BB84DecoyParams, eta: float, s: DecoySettings) -> FiniteKeyResult:
    """Expected secret key length from one block of ``p.block_size`` X-basis detections, with an
    error-correction leak of ``f n_X h(E_X)`` (Lim et al. eq. 1 on expected counts).

    Args:
        p: device parameters; ``block_size`` is n_X, ``eps_sec`` and ``eps_cor`` the security
            parameters.
        eta: total transmittance (channel x detector).
        s: the protocol's free settings.
    """
    pulses = pulses_for_block(p, eta, s, float(p.block_size or 0.0))
    if not math.isfinite(pulses):
        return FiniteKeyResult(-math.inf, math.inf, E0, E0)
    x, z = expected_counts(p, eta, s, pulses)
    leak = p.ec_efficiency * x.total * float(binary_entropy(x.error_rate))
    return secret_key_length(x, z, s, leak_ec=leak, eps_sec=p.eps_sec, eps_cor=p.eps_cor, pulses=pulses)


def _logistic(v: float) -> float:
    """expit(v) kept inside (1e-6, 1 - 1e-6): every probability stays strictly inside (0, 1)."""
    return min(max(1.0 / (1.0 + math.exp(-v)) if v > -700.0 else 0.0, 1e-6), 1.0 - 1e-6)


def _decode(v: np.ndarray, p: BB84DecoyParams) -> DecoySettings:
    """Unconstrained optimiser variables -> settings (logistic for probabilities, log intensities);
    plain floats (math, not numpy): the optimiser calls it for every point it tries."""
    v0, v1, v2, v3, v4 = (float(x) for x in v)
    p1 = _logistic(v1) * 0.98
    p2 = _logistic(v2) * (0.99 - p1)
    mu1 = p.mu if p.mu is not None else math.exp(min(max(v3, -20.0), 3.0))
    mu2 = p.nu if p.nu is not None else math.exp(min(max(v4, -20.0), 0.0)) * mu1
    return DecoySettings(q_x=_logistic(v0), p1=p1, p2=p2, mu1=mu1, mu2=mu2)


def _cost(v: np.ndarray, p: BB84DecoyParams, eta: float, pulses: float | None) -> float:
    """-log(rate) of the settings v for blocks of n_X bits (``pulses`` None) or of ``pulses`` pulses;
    a penalty that still slopes towards key where there is none."""
    s = _decode(v, p)
    if not s.valid():
        return 2 * _PENALTY
    result = finite_key_length(p, eta, s) if pulses is None else key_length_for_pulses(p, eta, s, pulses)
    if not result.key_length > 0:
        return _PENALTY - max(result.key_length, -1e12) / 1e12
    return -math.log(result.rate_per_pulse)


def key_length_for_pulses(p: BB84DecoyParams, eta: float, s: DecoySettings, pulses: float) -> FiniteKeyResult:
    """Expected secret key length of a block of ``pulses`` pulses (Lim et al. eq. 1 on the expected
    counts, error-correction leak f n_X h(E_X))."""
    x, z = expected_counts(p, eta, s, pulses)
    leak = p.ec_efficiency * x.total * float(binary_entropy(x.error_rate))
    return secret_key_length(x, z, s, leak_ec=leak, eps_sec=p.eps_sec, eps_cor=p.eps_cor, pulses=pulses)


_STARTS = (
    np.array([2.0, 0.5, -0.5, math.log(0.5), math.log(0.3)]),
    np.array([3.0, 1.0, 0.0, math.log(0.4), math.log(0.15)]),
    np.array([1.0, -1.0, 0.5, math.log(0.6), math.log(0.45)]),  # a small signal share, many decoys
    np.array([0.5, -1.5, 1.0, math.log(0.7), math.log(0.4)]),
    np.array([1.0, 0.0, -1.0, math.log(0.7), math.log(0.4)]),
)


def optimal_settings(p: BB84DecoyParams, eta: float, *, pulses: float | None = None) -> DecoySettings:
    """The settings that maximise the finite-key rate per pulse at total transmittance ``eta``, for
    blocks of ``p.block_size`` key-basis bits or, when given, of ``pulses`` pulses (``mu``/``nu``
    kept when given)."""
    from scipy.optimize import minimize  # noqa: PLC0415 - 0.6 s of import a link feeder need not pay

    rough = min((minimize(_cost, x0, args=(p, eta, pulses), method="Nelder-Mead",
                          options={"xatol": 0.1, "fatol": 0.01, "maxiter": 4000}) for x0 in _STARTS),
                key=lambda r: r.fun)  # each start roughly (to 1 % of the rate), then the best finely
    best = minimize(_cost, rough.x, args=(p, eta, pulses), method="Nelder-Mead",
                    options={"xatol": 1e-5, "fatol": 1e-8, "maxiter": 4000})
    return _decode((best if best.fun <= rough.fun else rough).x, p)


def finite_key_rate(p: BB84DecoyParams, channel_transmittance: float) -> RatePoint:
    """Finite-key secret bits per pulse for blocks of ``p.block_size`` sifted X-basis bits.

    Raises:
        ValueError: if ``p.block_size`` is not set.
    """
    if p.block_size is None:
        raise ValueError("finite_key_rate needs block_size (the number of sifted X-basis bits)")
    eta = channel_transmittance * p.detector_efficiency
    if eta <= 0:
        return RatePoint(0.0)
    settings = optimal_settings(p, eta)
    result = finite_key_length(p, eta, settings)
    if result.key_length <= 0 or not settings.valid():
        return RatePoint(0.0, None, result.qber_x)
    signal_clicks = bb84_channel(p, eta, settings.mu1, p.dark_count_prob).gain
    live = float(live_fraction(signal_clicks, p.rep_rate_hz, p.dead_time_s))
    return RatePoint(result.rate_per_pulse * live, settings.mu1, result.qber_x)
