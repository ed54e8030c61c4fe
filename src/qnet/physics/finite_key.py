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

The search (:func:`optimal_settings_batch`) runs on arrays: eqs. 1-5 are evaluated for thousands of
settings, and for many transmittances, in one numpy pass. Where the bounds s_X1, s_Z1 are not
positive the key length has no slope (a local search from there never moved: at n_X = 1e4 that was
no key at any length), so what the search maximises continues below key with the bounds' shortfall
(:func:`_key_length`); a grid over all five settings picks each start, a pattern search refines it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from qnet.physics._optimise import maximise_rows
from qnet.physics._types import E0
from qnet.physics.bb84 import BB84DecoyParams, bb84_live_fraction, bb84_mix_rates
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
    "key_lengths_for_pulses",
    "optimal_settings",
    "optimal_settings_batch",
    "pulses_for_block",
    "secret_key_length",
    "vacuum_and_single_bounds",
]

MU3 = 2e-4
"""Intensity of the vacuum-like decoy, fixed as in Lim et al. (2014), sec. IV."""

FloatArray = npt.NDArray[np.float64]
_Triple = tuple[FloatArray, FloatArray, FloatArray]
"""A value per intensity (mu1, mu2, mu3), each an array over blocks or candidate settings."""


def _floats(values: Sequence[float]) -> _Triple:
    a, b, c = (np.asarray(v, dtype=float) for v in values)
    return a, b, c


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


@dataclass(frozen=True)
class _Mixture:
    """The intensity mixture, and what eqs. 2-4 take from it: e^k / p_k, and tau_0, tau_1 with
    tau_n = sum_k p_k e^-k k^n / n!, the probability that a pulse carries n photons."""

    intens: _Triple
    scale: _Triple
    tau0: FloatArray
    tau1: FloatArray

    @classmethod
    def of(cls, probs: _Triple, intens: _Triple) -> _Mixture:
        a, b, c = (p * np.exp(-k) for p, k in zip(probs, intens, strict=True))
        return cls(intens, (1.0 / a, 1.0 / b, 1.0 / c), a + b + c, a * intens[0] + b * intens[1] + c * intens[2])


def _hoeffding(m: _Mixture, counts: _Triple, eps: float) -> tuple[list[FloatArray], list[FloatArray]]:
    """(n_k^+, n_k^-): Hoeffding bounds on the expected counts per intensity, rescaled by e^k/p_k
    (Lim et al., below eq. 2; with the errors m_k for eq. 4)."""
    delta = np.sqrt((counts[0] + counts[1] + counts[2]) * (0.5 * math.log(21.0 / eps)))
    return ([c * (n + delta) for c, n in zip(m.scale, counts, strict=True)],
            [c * (n - delta) for c, n in zip(m.scale, counts, strict=True)])


def _bounds(m: _Mixture, counts: _Triple, eps: float) -> tuple[FloatArray, FloatArray]:
    """(s_0, s_1): Lim et al. eq. 2 (clipped at 0) and eq. 3 (not clipped: its sign matters)."""
    mu1, mu2, mu3 = m.intens
    plus, minus = _hoeffding(m, counts, eps)
    s0 = np.maximum(0.0, m.tau0 * (mu2 * minus[2] - mu3 * plus[1]) / (mu2 - mu3))
    squares = mu2**2 - mu3**2
    s1 = m.tau1 * mu1 * (minus[1] - plus[2] - squares / mu1**2 * (plus[0] - s0 / m.tau0)) / (
        mu1 * (mu2 - mu3) - squares
    )
    return s0, s1


def vacuum_and_single_bounds(s: DecoySettings, counts: tuple[float, ...], eps: float) -> tuple[float, float]:
    """Lower bounds (s_0, s_1) on vacuum and single-photon detections (Lim et al. eqs. 2-3)."""
    s0, s1 = _bounds(_Mixture.of(_floats(s.probs), _floats(s.intensities)), _floats(counts), eps)
    return float(s0), max(0.0, float(s1))


def _gamma(eps: float, b: FloatArray, c: FloatArray, d: FloatArray) -> FloatArray:
    """The phase-error deviation term gamma(a, b, c, d) of Lim et al. eq. 5, with a = eps_sec
    (the paper's 21^2 / a^2 inside the logarithm); 1/2 where b is not inside (0, 1)."""
    inside = (b > 0.0) & (b < 1.0)
    b = np.where(inside, b, E0)
    arg = (c + d) / (c * d * (1.0 - b) * b) * (21.0 / eps) ** 2
    value = np.sqrt((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * np.log2(np.maximum(arg, 1.0)))
    return np.where(inside, value, E0)


def _key_length(m: _Mixture, x: _Triple, z: tuple[_Triple, _Triple], leak: FloatArray,
                eps_sec: float, eps_cor: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Lim et al. eq. 1 on arrays of blocks: (l, phi_X, l extended per key-basis detection).

    ``x`` holds the key-basis detections per intensity, ``z`` the test basis's (detections, errors).
    Where s_X1 or s_Z1 is not positive, l is -inf and phi_X 1/2. The extended length is l / n_X
    where s_X1, s_Z1 > 0 and (s_X0 - lambda_EC - the eps terms) / n_X + min(s_X1, 0) / n_X +
    min(s_Z1, 0) / n_Z elsewhere: continuous across the boundary (where l -> s_X0 - lambda_EC - ...),
    it rises as the single-photon bounds do, each per detection of its basis (so that starving the
    test basis, whose bound tends to 0 from below, is not a way up), and leads a search to key
    where the bounds are zero.
    """
    sx0, sx1 = _bounds(m, x, eps_sec)
    _sz0, sz1 = _bounds(m, z[0], eps_sec)
    ok = (sx1 > 0.0) & (sz1 > 0.0)
    sx1_ok, sz1_ok = np.where(ok, sx1, 1.0), np.where(ok, sz1, 1.0)
    m_plus, m_minus = _hoeffding(m, z[1], eps_sec)
    vz1 = m.tau1 * (m_plus[1] - m_minus[2]) / (m.intens[1] - m.intens[2])  # eq. 4
    ratio = np.maximum(vz1 / sz1_ok, 0.0)
    # gamma vanishes as its error-rate argument b -> 0, an artefact of its approximations: with no
    # observed error, use the rate one error would give, so that the sampling term stays positive
    phi = np.minimum(E0, ratio + _gamma(eps_sec, np.maximum(ratio, 1.0 / sz1_ok), sz1_ok, sx1_ok))  # eq. 5
    base = sx0 - leak - (6.0 * math.log2(21.0 / eps_sec) + math.log2(2.0 / eps_cor))
    length = np.where(ok, base + sx1_ok * (1.0 - np.asarray(binary_entropy(phi))), -np.inf)
    n_x, n_z = x[0] + x[1] + x[2], z[0][0] + z[0][1] + z[0][2]
    shortfall = (base + np.minimum(sx1, 0.0)) / n_x + np.minimum(sz1, 0.0) / n_z
    return length, np.where(ok, phi, E0), np.where(ok, length / n_x, shortfall)


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
    length, phi, _ = _key_length(_Mixture.of(_floats(s.probs), _floats(s.intensities)), _floats(x.detections),
                                 (_floats(z.detections), _floats(z.errors)), np.asarray(leak_ec, dtype=float),
                                 eps_sec, eps_cor)
    return FiniteKeyResult(float(length), pulses, x.error_rate, float(phi))


def expected_counts(p: BB84DecoyParams, eta: float, s: DecoySettings, pulses: float) -> tuple[BasisCounts, BasisCounts]:
    """Expected (X, Z) counts of ``pulses`` pulses through total transmittance ``eta``
    (the detector model of :func:`_intensity_rates`)."""
    probs, intens = _floats(s.probs), _floats(s.intensities)
    clicks, errors = _intensity_rates(p, np.asarray(eta, dtype=float), probs, intens)

    def basis(q: float) -> BasisCounts:
        n = _per_pulse(np.asarray(q * q * pulses), probs, clicks)
        m = _per_pulse(np.asarray(q * q * pulses), probs, errors)
        return BasisCounts((float(n[0]), float(n[1]), float(n[2])), (float(m[0]), float(m[1]), float(m[2])))

    return basis(s.q_x), basis(1.0 - s.q_x)


def _intensity_rates(p: BB84DecoyParams, eta: FloatArray, probs: _Triple, intens: _Triple) -> tuple[_Triple, _Triple]:
    """(clicks, erring clicks) per pulse of each intensity, element-wise: the detector model of
    :func:`qnet.physics.bb84.bb84_mix_rates` (after-pulses spread over the intensity mix), before
    dead time, which scales the rate at the end (:func:`_live_fraction`)."""
    gains, errors = bb84_mix_rates(p if p.dead_time_s == 0 else replace(p, dead_time_s=0.0), eta, intens, probs)
    g, e = [np.asarray(v, dtype=float) for v in gains], [np.asarray(v, dtype=float) for v in errors]
    return (g[0], g[1], g[2]), (e[0], e[1], e[2])


def _per_pulse(weight: FloatArray, probs: _Triple, rates: _Triple) -> _Triple:
    """weight p_k r_k per intensity k (weight q^2 N: the pulses sent and measured in one basis)."""
    return weight * probs[0] * rates[0], weight * probs[1] * rates[1], weight * probs[2] * rates[2]


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


def key_length_for_pulses(p: BB84DecoyParams, eta: float, s: DecoySettings, pulses: float) -> FiniteKeyResult:
    """Expected secret key length of a block of ``pulses`` pulses (Lim et al. eq. 1 on the expected
    counts, error-correction leak f n_X h(E_X))."""
    x, z = expected_counts(p, eta, s, pulses)
    leak = p.ec_efficiency * x.total * float(binary_entropy(x.error_rate))
    return secret_key_length(x, z, s, leak_ec=leak, eps_sec=p.eps_sec, eps_cor=p.eps_cor, pulses=pulses)


@dataclass(frozen=True)
class _Candidates:
    """Settings on arrays, one candidate per element: what the search tries at once."""

    q_x: FloatArray
    p1: FloatArray
    p2: FloatArray
    mu1: FloatArray
    mu2: FloatArray

    @property
    def probs(self) -> _Triple:
        return self.p1, self.p2, 1.0 - self.p1 - self.p2

    @property
    def intensities(self) -> _Triple:
        return self.mu1, self.mu2, np.full_like(self.mu1, MU3)

    def valid(self) -> npt.NDArray[np.bool_]:
        """:meth:`DecoySettings.valid` per candidate (the probabilities are valid by construction)."""
        return (self.mu2 > MU3) & (self.mu1 > self.mu2 + MU3)

    def settings(self, i: int) -> DecoySettings:
        return DecoySettings(q_x=float(self.q_x[i]), p1=float(self.p1[i]), p2=float(self.p2[i]),
                             mu1=float(self.mu1[i]), mu2=float(self.mu2[i]))

    @classmethod
    def of(cls, settings: Sequence[DecoySettings]) -> _Candidates:
        rows = np.array([(s.q_x, s.p1, s.p2, s.mu1, s.mu2) for s in settings], dtype=float).reshape(-1, 5)
        q, p1, p2, mu1, mu2 = rows.T
        return cls(q, p1, p2, mu1, mu2)


def key_lengths_for_pulses(p: BB84DecoyParams, etas: Sequence[float], settings: Sequence[DecoySettings],
                           pulses: Sequence[float]) -> FloatArray:
    """:func:`key_length_for_pulses` (its ``key_length``) of many blocks at once, on arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _block_lengths(p, np.asarray(etas, dtype=float), np.asarray(pulses, dtype=float),
                              _Candidates.of(settings))[0]


def _block_lengths(p: BB84DecoyParams, eta: FloatArray, pulses: FloatArray,
                   c: _Candidates) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(l, N, l extended per key-basis detection) of each candidate: Lim et al. eq. 1 on the expected
    counts of a block of ``pulses`` pulses or, where that is NaN, of ``p.block_size`` key-basis
    detections."""
    clicks, errors = _intensity_rates(p, eta, c.probs, c.intensities)
    wx, wz = c.q_x * c.q_x, (1.0 - c.q_x) ** 2
    x_rate = sum(_per_pulse(wx, c.probs, clicks))
    n = np.where(np.isnan(pulses), (p.block_size or 0.0) / x_rate, pulses)
    x = _per_pulse(n * wx, c.probs, clicks)
    z = _per_pulse(n * wz, c.probs, clicks), _per_pulse(n * wz, c.probs, errors)
    x_total = n * x_rate
    leak = p.ec_efficiency * x_total * np.asarray(binary_entropy(sum(_per_pulse(n * wx, c.probs, errors)) / x_total))
    length, _, extended = _key_length(_Mixture.of(c.probs, c.intensities), x, z, leak, p.eps_sec, p.eps_cor)
    return length, n, extended


_NO_KEY = -1e4
"""Scores of settings that make no key lie in [_NO_KEY - 711, _NO_KEY], below log(l / N) of any key."""


def _scores(p: BB84DecoyParams, eta: FloatArray, pulses: FloatArray, c: _Candidates) -> FloatArray:
    """What the search maximises: log(l / N) where there is key; elsewhere _NO_KEY plus asinh of the
    extended length per detection (:func:`_key_length`), which rises towards key and never levels off."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # in the branches not taken
        length, n, extended = _block_lengths(p, eta, pulses, c)
        rate = np.log(np.maximum(length, 1e-300) / n)
        short = _NO_KEY + np.minimum(np.arcsinh(np.nan_to_num(extended, nan=-1e300)), 0.0)  # never flat
    return np.where(c.valid(), np.where(length > 0, rate, short), 2 * _NO_KEY)


def _logistic(v: FloatArray) -> FloatArray:
    """expit(v) kept inside (1e-6, 1 - 1e-6): every probability stays strictly inside (0, 1)."""
    return np.clip(1.0 / (1.0 + np.exp(-np.clip(v, -40.0, 40.0))), 1e-6, 1.0 - 1e-6)


def _decode(u: FloatArray, p: BB84DecoyParams) -> _Candidates:
    """Unconstrained search variables (n, 5) -> settings: logistic probabilities, and intensities
    that meet mu1 > mu2 + mu3, mu2 > mu3 for every u (``mu``/``nu`` kept when given)."""
    p1 = _logistic(u[:, 1]) * 0.98
    floor = (p.nu if p.nu is not None else MU3) + MU3
    mu1 = np.full(len(u), p.mu) if p.mu is not None else floor + np.exp(np.clip(u[:, 3], -20.0, 3.0))
    mu2 = np.full(len(u), p.nu) if p.nu is not None else MU3 + _logistic(u[:, 4]) * (mu1 - 2 * MU3)
    return _Candidates(_logistic(u[:, 0]), p1, _logistic(u[:, 2]) * (0.99 - p1), mu1, mu2)


def _logit(x: tuple[float, ...]) -> list[float]:
    return [math.log(v / (1.0 - v)) for v in x]


_GRID = np.array(list(itertools.product(
    _logit((0.2, 0.5, 0.75, 0.9, 0.97, 0.99)),  # q_X
    _logit((0.05 / 0.98, 0.3 / 0.98, 0.6 / 0.98, 0.85 / 0.98)),  # p1
    _logit((0.25, 0.5, 0.75)),  # p2, as a share of 1 - p1
    np.log(np.geomspace(0.1, 1.0, 5)),  # mu1, less its floor (2 mu3, or nu + mu3 when nu is given)
    _logit((0.05, 0.2, 0.5)),  # mu2, as a share of mu1 (less 2 mu3)
)))
"""Where the search starts: every row's best point of this grid (1,080 points)."""


def optimal_settings_batch(p: BB84DecoyParams, etas: Sequence[float], *,
                           pulses: float | Sequence[float] | None = None) -> list[DecoySettings]:
    """The settings that maximise the finite-key rate per pulse at each total transmittance of
    ``etas``, for blocks of ``p.block_size`` key-basis bits or, when given, of ``pulses`` pulses
    (one number, or one per transmittance); ``mu``/``nu`` kept when given.

    All transmittances are searched at once, vectorised (:func:`qnet.physics._optimise.maximise_rows`):
    a grid of 1,080 settings, then a pattern search from each row's best. The score below key
    still rises towards it (:func:`_scores`), so from a start where the bounds are zero the search
    climbs to key instead of stopping; the grid chooses among local optima (two, 1 % apart, at
    120 km with n_X = 1e4 and Lim et al.'s device).
    """
    eta = np.asarray(etas, dtype=float)
    blocks = np.broadcast_to(np.asarray(math.nan if pulses is None else pulses, dtype=float), eta.shape)
    free = (True, True, True, p.mu is None, p.nu is None)

    def score(u: FloatArray, row: npt.NDArray[np.intp]) -> FloatArray:
        return _scores(p, eta[row], blocks[row], _decode(u, p))

    best = maximise_rows(score, len(eta), _GRID, free=free)
    found = _decode(best, p)
    return [found.settings(i) for i in range(len(eta))]


def optimal_settings(p: BB84DecoyParams, eta: float, *, pulses: float | None = None) -> DecoySettings:
    """The settings that maximise the finite-key rate per pulse at total transmittance ``eta``
    (:func:`optimal_settings_batch` for one transmittance)."""
    return optimal_settings_batch(p, [eta], pulses=pulses)[0]


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
    live = bb84_live_fraction(p, eta, settings.intensities, settings.probs)  # per detector, over the mix
    return RatePoint(result.rate_per_pulse * live, settings.mu1, result.qber_x)
