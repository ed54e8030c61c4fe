"""Heralded entanglement between two matter qubits through a middle Bell-state-measurement station.

Each node emits a photon entangled with its memory qubit; the photons meet on a beam splitter at
the station, and a detection pattern heralds an entangled pair. All probabilities are per attempt;
``eta_a`` and ``eta_b`` are the transmittances of the two arms: emission and collection, fibre to
the station, detector.

- **Single click** (Cabrillo, Cirac, García-Fernández, Zoller, PRA 59, 1025 (1999); as run by
  Humphreys et al., Nature 558, 268 (2018), who report "entangling rates up to 39 Hz" between
  nodes 2 m apart; analysed by Rozpędek et al., PRA 99, 052330 (2019)). Each node prepares
  sqrt(1 - alpha)|dark> + sqrt(alpha)|bright>|1 photon>; exactly one click heralds Psi+- of the two
  spins. For equal arms, to first order, p = 2 alpha eta and F = 1 - alpha. The exact expression
  used here is derived in this module, not copied from those papers (threshold detectors, photons
  from |bright, bright> bunching on the beam splitter, dark counts p_d per detector per window; the
  tests check it against a state-vector simulation of spins, photons and detectors), term by term:

      one photon detected:           alpha (1 - alpha) (eta_A + eta_B) (1 - p_d)   coherent -> Phi+/Phi-
      one photon lost, a dark count: alpha (1 - alpha) (2 - eta_A - eta_B) 2 p_d (1 - p_d)  -> Z error 1/2
      two photons (bright, bright):  alpha^2 h(1 - (1 - eta_A)(1 - eta_B))                -> X/Y errors
      no photon, a dark count:       (1 - alpha)^2 h(0)                                   -> X/Y errors

  with h(q) = q (1 - p_d) + (1 - q) 2 p_d (1 - p_d) the probability that exactly one detector
  clicks when a photon reaches the detectors with probability q. ``coherence`` (the factor on the
  heralded state's off-diagonal element: photon indistinguishability, and exp(-sigma^2/2) for a
  Gaussian optical phase error of sigma radians, :func:`phase_coherence`) splits the coherent part
  into (1 + c)/2 Phi+ and (1 - c)/2 Phi-; unequal arms multiply c by 2 sqrt(eta_A eta_B) /
  (eta_A + eta_B). A local X on one node maps Psi+- to Phi+- (the convention of the returned
  coefficients, which are the Bell-basis diagonal: what a twirled pair keeps).
- **Barrett-Kok** two-round scheme (Barrett, Kok, PRA 71, 060310(R) (2005)): one click in each of
  two rounds with a spin flip between them; p = eta_A eta_B / 2 (a linear-optics Bell measurement
  identifies two of the four Bell states). Its fidelity is limited by dark counts and photon
  distinguishability, not by alpha; the terms follow the same scheme as above.
- **The station's Bell-state measurement** for photons from two pairs (entanglement swapping, MDI
  links): linear optics identifies half the Bell states (Calsamiglia, Lütkenhaus, Appl. Phys. B 72,
  67 (2001): 1/2 is the limit without ancillas); a deterministic one identifies all.
- **Attempt period**: a node cannot re-arm its memory before the herald returns (no
  multiplexing), so an attempt takes max(1/f_source, t_prep + 2 L_half / c_fibre).
- **Sources**: SPDC pairs with thermal statistics (Ma, Fung, Lo, PRA 76, 012307 (2007), eqs. for
  the gain and QBER of an entangled PDC source), and single emitters (efficiency, g2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from qnet.physics.memories import BellDiagonal, werner_fidelity

__all__ = [
    "C_FIBRE_M_PER_S",
    "BellStateMeasurement",
    "Herald",
    "attempt_period_s",
    "barrett_kok",
    "emitter_photon_numbers",
    "herald_round_trip_s",
    "phase_coherence",
    "single_click",
    "spdc_gain_qber",
    "spdc_pair_fidelity",
    "thermal_probability",
]

C_FIBRE_M_PER_S = 2.0e8
"""Speed of light in silica fibre (group index ~1.5): 5 us per km."""


class Herald(NamedTuple):
    """One heralded attempt: its success probability and the heralded state's Bell coefficients."""

    probability: float
    """Probability per attempt that the station heralds success (true and false heralds)."""
    bell: BellDiagonal
    """Weights (I, Z, X, Y) of Phi+, Phi-, Psi+, Psi- of the heralded state (after the Pauli
    correction the herald calls for)."""

    @property
    def fidelity(self) -> float:
        """Fidelity of the heralded state to Phi+."""
        return self.bell[0]

    @property
    def state(self) -> BellDiagonal:
        """The heralded state's (I, Z, X, Y) coefficients (the same as :attr:`bell`)."""
        return self.bell


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _one_click(q: float, dark: float) -> float:
    """Probability that exactly one of two detectors clicks, when light reaches them with
    probability q (all of it at one detector) and each has dark-count probability ``dark``."""
    return q * (1.0 - dark) + (1.0 - q) * 2.0 * dark * (1.0 - dark)


def _herald(coherent: float, z_noise: float, xy_noise: float, coherence: float) -> Herald:
    """Normalise weighted herald terms into a :class:`Herald`."""
    total = coherent + z_noise + xy_noise
    if total <= 0.0:
        return Herald(0.0, (0.25, 0.25, 0.25, 0.25))
    i = (coherent * (1.0 + coherence) / 2.0 + z_noise / 2.0) / total
    z = (coherent * (1.0 - coherence) / 2.0 + z_noise / 2.0) / total
    xy = xy_noise / 2.0 / total
    return Herald(total, (i, z, xy, xy))


def phase_coherence(phase_sigma_rad: float) -> float:
    """Coherence factor E[exp(i phi)] = exp(-sigma^2 / 2) of a Gaussian phase error of std sigma.

    Examples:
        >>> phase_coherence(0.0)
        1.0
        >>> round(phase_coherence(0.3), 4)
        0.956
    """
    return math.exp(-(phase_sigma_rad**2) / 2.0)


def single_click(eta_a: float, eta_b: float, alpha: float, dark_count_prob: float = 0.0, *,
                 coherence: float = 1.0) -> Herald:
    """Single-click (single-photon) heralding between two nodes.

    With unequal arms the one-photon branches have amplitudes ~ sqrt(eta_A) and sqrt(eta_B): the
    heralded state is not maximally entangled, which multiplies the coherence by
    2 sqrt(eta_A eta_B) / (eta_A + eta_B) (experiments balance the arms by giving each node its own
    alpha, alpha_A eta_A = alpha_B eta_B; this model takes one alpha for both).

    Args:
        eta_a: transmittance of node A's arm (emission, collection, fibre, detector), in [0, 1].
        eta_b: transmittance of node B's arm, in [0, 1].
        alpha: bright-state population of each node's spin-photon state, in [0, 1].
        dark_count_prob: dark-count probability of each of the two detectors per window.
        coherence: off-diagonal factor of the heralded state, in [0, 1] (:func:`phase_coherence`).

    Returns:
        The success probability and the state's (I, Z, X, Y) coefficients.

    Examples:
        >>> h = single_click(1e-3, 1e-3, 0.05)
        >>> round(h.probability / (2 * 0.05 * 1e-3), 3), round(h.fidelity, 4)  # ~2 alpha eta, ~1 - alpha
        (1.0, 0.95)
    """
    for name, value in (("eta_a", eta_a), ("eta_b", eta_b), ("alpha", alpha),
                        ("dark_count_prob", dark_count_prob), ("coherence", coherence)):
        _check_probability(name, value)
    d, one = dark_count_prob, alpha * (1.0 - alpha)
    coherent = one * (eta_a + eta_b) * (1.0 - d)
    z_noise = one * (_one_click(eta_a, d) + _one_click(eta_b, d)) - coherent
    xy_noise = alpha**2 * _one_click(1.0 - (1.0 - eta_a) * (1.0 - eta_b), d) + (1.0 - alpha) ** 2 * _one_click(0.0, d)
    balance = 2.0 * math.sqrt(eta_a * eta_b) / (eta_a + eta_b) if eta_a + eta_b > 0 else 1.0
    return _herald(coherent, z_noise, xy_noise, coherence * balance)


def barrett_kok(eta_a: float, eta_b: float, dark_count_prob: float = 0.0, *, coherence: float = 1.0) -> Herald:
    """Barrett-Kok two-round heralding: one click in each round, p = eta_A eta_B / 2 without noise.

    Per round the spins (|up> + |down>)/sqrt(2) emit a photon if up; |up, down> and |down, up>
    give one photon per round (coherent success); |up, up> and |down, down> give both photons in
    one round and none in the other, so they herald only with a dark count (X/Y errors); a lost
    photon replaced by a dark count leaves a dephased pair (Z error 1/2).

    Args:
        eta_a: transmittance of node A's arm, in [0, 1].
        eta_b: transmittance of node B's arm, in [0, 1].
        dark_count_prob: dark-count probability of each detector per round's window.
        coherence: off-diagonal factor (photon indistinguishability over both rounds), in [0, 1].

    Examples:
        >>> h = barrett_kok(0.1, 0.2)
        >>> round(h.probability, 6), h.fidelity
        (0.01, 1.0)
    """
    for name, value in (("eta_a", eta_a), ("eta_b", eta_b), ("dark_count_prob", dark_count_prob),
                        ("coherence", coherence)):
        _check_probability(name, value)
    d = dark_count_prob
    coherent = 0.5 * eta_a * eta_b * (1.0 - d) ** 2
    z_noise = 0.5 * _one_click(eta_a, d) * _one_click(eta_b, d) - coherent
    both = 1.0 - (1.0 - eta_a) * (1.0 - eta_b)
    xy_noise = 0.5 * _one_click(both, d) * _one_click(0.0, d)
    return _herald(coherent, z_noise, xy_noise, coherence)


@dataclass(frozen=True, kw_only=True)
class BellStateMeasurement:
    """A Bell-state measurement on two photons: the fraction of Bell states it identifies, and the
    false heralds its detectors' dark counts cause.

    Attributes:
        identified_fraction: fraction of the four Bell states identified (1/2 for linear optics).
        dark_count_prob: dark-count probability per detector per window.
        valid_patterns: how many two-detector click patterns herald success among its four
            detectors (4 for the linear-optics polarisation analyser: Psi+ on (H1, V1), (H2, V2),
            Psi- on (H1, V2), (V1, H2)).

    Examples:
        >>> BellStateMeasurement.linear_optics().success_probability(1.0, 1.0)
        0.5
        >>> BellStateMeasurement.deterministic().success_probability(0.9, 0.9)
        0.81
    """

    identified_fraction: float
    dark_count_prob: float = 0.0
    valid_patterns: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.identified_fraction <= 1.0:
            raise ValueError(f"identified_fraction must be in (0, 1], got {self.identified_fraction!r}")
        _check_probability("dark_count_prob", self.dark_count_prob)
        if self.valid_patterns < 0:
            raise ValueError(f"valid_patterns must be >= 0, got {self.valid_patterns!r}")

    @classmethod
    def linear_optics(cls, dark_count_prob: float = 0.0) -> BellStateMeasurement:
        """The standard beam-splitter analyser: half the Bell states, four valid patterns."""
        return cls(identified_fraction=0.5, dark_count_prob=dark_count_prob, valid_patterns=4)

    @classmethod
    def deterministic(cls) -> BellStateMeasurement:
        """A complete Bell measurement (gate-based, or an ideal photonic one) with no false heralds."""
        return cls(identified_fraction=1.0, dark_count_prob=0.0, valid_patterns=0)

    def success_probability(self, eta_a: float, eta_b: float) -> float:
        """Probability of a true herald: both photons detected and their Bell state identified."""
        return self.identified_fraction * eta_a * eta_b

    def false_herald_probability(self, eta_a: float, eta_b: float) -> float:
        """Probability that dark counts complete a valid pattern: one photon lost and a dark count
        at one of the ``valid_patterns / 2`` partner detectors, or both lost and two dark counts."""
        d = self.dark_count_prob
        one_lost = eta_a * (1.0 - eta_b) + (1.0 - eta_a) * eta_b
        return one_lost * self.valid_patterns / 2.0 * d + (1.0 - eta_a) * (1.0 - eta_b) * self.valid_patterns * d**2

    def herald(self, eta_a: float, eta_b: float) -> Herald:
        """Swap two perfect Phi+ pairs: true heralds give Phi+, false ones the fully mixed state."""
        true, false = self.success_probability(eta_a, eta_b), self.false_herald_probability(eta_a, eta_b)
        if true + false <= 0.0:
            return Herald(0.0, (0.25, 0.25, 0.25, 0.25))
        noise = false / (true + false) / 4.0
        return Herald(true + false, (1.0 - 3.0 * noise, noise, noise, noise))


def herald_round_trip_s(half_distance_km: float) -> float:
    """Time for a photon to reach the station and its herald to come back: 2 L_half / c_fibre.

    Examples:
        >>> herald_round_trip_s(10.0)  # 2 x 10 km x 5 us/km
        0.0001
    """
    if half_distance_km < 0:
        raise ValueError(f"half_distance_km must be >= 0, got {half_distance_km!r}")
    return 2.0 * half_distance_km * 1e3 / C_FIBRE_M_PER_S


def attempt_period_s(half_distance_km: float, *, source_rate_hz: float = math.inf, preparation_s: float = 0.0) -> float:
    """Duration of one heralded attempt: max(1 / f_source, t_prep + 2 L_half / c_fibre).

    A node's memory is busy from the emission until the herald returns (no multiplexing); the source
    cannot go faster than its repetition rate either.

    Args:
        half_distance_km: fibre length from a node to the station.
        source_rate_hz: the source's maximum repetition rate (``math.inf``: no limit).
        preparation_s: local time per attempt before emission (spin initialisation, the pulse).

    Examples:
        >>> attempt_period_s(1.0, source_rate_hz=1e6)  # the 10 us round trip dominates
        1e-05
        >>> attempt_period_s(0.0, source_rate_hz=1e6)
        1e-06
    """
    if not source_rate_hz > 0 or preparation_s < 0:
        raise ValueError(f"need source_rate_hz > 0 and preparation_s >= 0, got {source_rate_hz!r}, {preparation_s!r}")
    return max(1.0 / source_rate_hz, preparation_s + herald_round_trip_s(half_distance_km))


def thermal_probability(n: int, mean_photons: float) -> float:
    """Thermal photon-number distribution P(n) = mu^n / (1 + mu)^(n + 1) (one mode of an SPDC pair).

    Examples:
        >>> thermal_probability(0, 0.1), round(thermal_probability(2, 0.1), 6)
        (0.9090909090909091, 0.007513)
    """
    if n < 0 or mean_photons < 0:
        raise ValueError(f"need n >= 0 and mean_photons >= 0, got {n!r}, {mean_photons!r}")
    return float(mean_photons**n / (1.0 + mean_photons) ** (n + 1))


def spdc_gain_qber(*, mean_pairs: float, eta_a: float, eta_b: float, background_a: float = 0.0,
                   background_b: float = 0.0, misalignment: float = 0.0) -> tuple[float, float]:
    """Coincidence gain Q and QBER E of a polarisation-entangled SPDC source between A and B
    (Ma, Fung, Lo, PRA 76, 012307 (2007), the gain and QBER of their PDC model).

    With lambda = mean_pairs / 2 (mean photon number per polarisation mode) and
    D = 1 + eta_A lambda + eta_B lambda - eta_A eta_B lambda:

        Q = 1 - (1 - Y0A)/(1 + eta_A lambda)^2 - (1 - Y0B)/(1 + eta_B lambda)^2 + (1 - Y0A)(1 - Y0B)/D^2
        E Q = e0 Q - 2 (e0 - e_d) eta_A eta_B lambda (1 + lambda) / ((1 + eta_A lambda)(1 + eta_B lambda) D),

    e0 = 1/2. Multi-pair emission makes E grow with mean_pairs even with no background.

    Args:
        mean_pairs: mean number of photon pairs per pulse, mu = 2 lambda.
        eta_a: transmittance to A's detectors, detection included.
        eta_b: transmittance to B's detectors, detection included.
        background_a: background (dark-count) probability Y0A of A's detection per window.
        background_b: background probability Y0B of B's detection per window.
        misalignment: intrinsic error e_d of a detected pair.

    Returns:
        (Q, E).

    Examples:
        >>> q, e = spdc_gain_qber(mean_pairs=0.01, eta_a=0.1, eta_b=0.1)
        >>> round(q / (0.01 * 0.01), 3), round(e, 5)  # ~ mu eta_A eta_B; E from multi-pair events alone
        (1.012, 0.00445)
    """
    lam, ya, yb, e0 = mean_pairs / 2.0, background_a, background_b, 0.5
    ga, gb = 1.0 + eta_a * lam, 1.0 + eta_b * lam
    d = ga + gb - 1.0 - eta_a * eta_b * lam
    gain = 1.0 - (1.0 - ya) / ga**2 - (1.0 - yb) / gb**2 + (1.0 - ya) * (1.0 - yb) / d**2
    if gain <= 0.0:
        return 0.0, e0
    correlated = 2.0 * (e0 - misalignment) * eta_a * eta_b * lam * (1.0 + lam) / (ga * gb * d)
    return gain, (e0 * gain - correlated) / gain


def spdc_pair_fidelity(qber: float) -> float:
    """Fidelity of the pair a QBER E describes, taking the errors to be isotropic (a Werner state
    of visibility V = 1 - 2 E): F = (1 + 3 V)/4 = 1 - 3 E / 2.

    Examples:
        >>> spdc_pair_fidelity(0.0), spdc_pair_fidelity(0.5)
        (1.0, 0.25)
    """
    return werner_fidelity(1.0 - 2.0 * qber)


def emitter_photon_numbers(efficiency: float, g2: float) -> tuple[float, float, float]:
    """Photon-number probabilities (p0, p1, p2) of a single emitter with mean photon number
    ``efficiency`` and second-order correlation g2, truncated at two photons.

    g2 = <n(n - 1)> / <n>^2 = 2 p2 / eta^2 fixes p2 = g2 eta^2 / 2; then p1 = eta - 2 p2.

    Examples:
        >>> emitter_photon_numbers(0.5, 0.0)
        (0.5, 0.5, 0.0)
        >>> [round(p, 6) for p in emitter_photon_numbers(0.5, 0.02)]
        [0.5025, 0.495, 0.0025]
    """
    _check_probability("efficiency", efficiency)
    p2 = g2 * efficiency**2 / 2.0
    p1 = efficiency - 2.0 * p2
    if g2 < 0 or p1 < 0:
        raise ValueError(f"g2 must be in [0, 1 / efficiency], got g2={g2!r} for efficiency={efficiency!r}")
    return (1.0 - p1 - p2, p1, p2)
