"""Entanglement-based QKD (BBM92) on Bell-diagonal pairs: error rates, sifting and the asymptotic key.

In BBM92 (Bennett, Brassard, Mermin, PRL 68, 557 (1992)) a source, here a repeater chain, hands
Alice and Bob one qubit each of a pair meant to be ``Phi+``; each measures in Z or X, they keep the
rounds where the bases agree (sifting) and the outcomes are the raw key. On a Bell-diagonal pair
``(p_I, p_Z, p_X, p_Y)`` (the Pauli error on one qubit of ``Phi+``, :mod:`qnet.physics.bell`):

- ``Phi+`` has ZZ = XX = +1; an X or Y error flips the ZZ correlation and a Z or Y error the XX one,
  so the bit error rates are ``e_Z = p_X + p_Y`` and ``e_X = p_Z + p_Y`` (a Werner pair of fidelity
  F has ``e_Z = e_X = 2(1 - F)/3``);
- with a uniform basis choice half the pairs are sifted; with the biased choice of efficient BB84,
  Z with probability q at both ends, ``q^2 + (1 - q)^2`` (Lo, Chau, Ardehali, J. Cryptology 18, 133
  (2005));
- the asymptotic secret fraction of a Z-basis key bit is ``r = 1 - h(e_X) - f h(e_Z)``: privacy
  amplification removes the phase error, which for the key basis Z is the X-basis bit error, and
  error correction discloses ``f h(e_Z)`` (Shor & Preskill, PRL 85, 441 (2000); for the
  entanglement-based protocol with a source the adversary holds, Koashi & Preskill, PRL 90, 057902
  (2003), and Ma, Fung, Lo, PRA 76, 012307 (2007)). X-basis key bits swap the roles of the two
  error rates, as Lo, Chau and Ardehali estimate each basis's errors separately.

Asymptotic: no finite-size corrections (the parameter estimates are taken as exact).
"""

from __future__ import annotations

from collections.abc import Iterable

from scipy.optimize import brentq

from qnet.physics.bell import BellDiagonal, validate
from qnet.physics.entropy import binary_entropy

__all__ = ["EC_EFFICIENCY", "expected_secret_bits", "qber_threshold", "qber_x", "qber_z",
           "secret_bits_per_pair", "secret_fraction", "sifting_probability"]

EC_EFFICIENCY = 1.16
"""Error-correction inefficiency f of the model (the value :mod:`qnet.physics.mdiqkd` assumes; the
Cascade of ``qnet.quantum.postprocess``, told the QBER, reaches about 1.16 on 2000-bit frames at
2.6 %, 1.07 on 20,000-bit ones)."""


def qber_z(state: BellDiagonal) -> float:
    """Z-basis bit error rate of a pair: the X and Y errors, which flip ZZ.

    Examples:
        >>> round(qber_z((0.9, 0.05, 0.03, 0.02)), 6)
        0.05
    """
    _, _, p_x, p_y = validate(state)
    return p_x + p_y


def qber_x(state: BellDiagonal) -> float:
    """X-basis bit error rate of a pair: the Z and Y errors, which flip XX.

    Examples:
        >>> round(qber_x((0.9, 0.05, 0.03, 0.02)), 6)
        0.07
    """
    _, p_z, _, p_y = validate(state)
    return p_z + p_y


def sifting_probability(basis_bias: float = 0.5) -> float:
    """Probability that both ends measure in the same basis, each choosing Z with ``basis_bias``.

    Examples:
        >>> sifting_probability(), sifting_probability(0.9)
        (0.5, 0.8200000000000001)
    """
    if not 0.0 < basis_bias < 1.0:
        raise ValueError(f"basis_bias must be in (0, 1) (both bases are needed), got {basis_bias!r}")
    return basis_bias**2 + (1.0 - basis_bias) ** 2


def secret_fraction(e_key: float, e_phase: float, *, ec_efficiency: float = EC_EFFICIENCY) -> float:
    """Secret bits per sifted key bit, ``max(1 - h(e_phase) - f h(e_key), 0)`` (Shor-Preskill).

    Args:
        e_key: bit error rate of the key basis (``e_Z`` for Z-basis key bits).
        e_phase: phase error rate, the other basis's bit error rate (``e_X``).
        ec_efficiency: error-correction inefficiency f >= 1.

    Examples:
        >>> round(secret_fraction(0.02, 0.02), 4)  # a Werner pair of F = 0.97
        0.6945
        >>> secret_fraction(0.111, 0.111, ec_efficiency=1.0)  # just past the threshold
        0.0
    """
    if ec_efficiency < 1.0:
        raise ValueError(f"ec_efficiency must be >= 1 (1 is the Shannon limit), got {ec_efficiency!r}")
    for name, e in (("e_key", e_key), ("e_phase", e_phase)):
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {e!r}")
    r = 1.0 - float(binary_entropy(float(e_phase))) - ec_efficiency * float(binary_entropy(float(e_key)))
    return max(r, 0.0)


def secret_bits_per_pair(state: BellDiagonal, *, basis_bias: float = 0.5,
                         ec_efficiency: float = EC_EFFICIENCY) -> float:
    """Asymptotic secret bits per delivered pair: Z-Z rounds (probability q^2) give Z-basis key bits,
    X-X rounds (``(1-q)^2``) X-basis ones, each with its own error rates (Lo, Chau, Ardehali 2005).

    Examples:
        >>> from qnet.physics.bell import werner
        >>> round(secret_bits_per_pair(werner(0.97)), 4)  # half the pairs sifted, r = 0.6945
        0.3472
        >>> round(secret_bits_per_pair((0.95, 0.0, 0.05, 0.0), basis_bias=0.9), 4)  # X errors: Z-basis bits flip
        0.548
    """
    q = basis_bias
    sifting_probability(q)  # validates q
    e_z, e_x = qber_z(state), qber_x(state)
    return (q**2 * secret_fraction(e_z, e_x, ec_efficiency=ec_efficiency)
            + (1.0 - q) ** 2 * secret_fraction(e_x, e_z, ec_efficiency=ec_efficiency))


def expected_secret_bits(states: Iterable[BellDiagonal], *, basis_bias: float = 0.5,
                         ec_efficiency: float = EC_EFFICIENCY) -> float:
    """Asymptotic secret bits from a stream of pairs that are post-processed together.

    The parties estimate one error rate per basis over the whole stream, so the key is that of the
    stream's mean state (not the sum of each pair's: h is concave, and a pair's own error is unknown).

    Args:
        states: each delivered pair's Bell-diagonal state.
        basis_bias: probability of the Z basis at each end.
        ec_efficiency: error-correction inefficiency f.

    Returns:
        Expected secret bits (0 for an empty stream).

    Examples:
        >>> from qnet.physics.bell import werner
        >>> round(expected_secret_bits([werner(0.97)] * 1000))
        347
        >>> round(expected_secret_bits([werner(1.0), werner(0.94)] * 500))  # the mean state is F = 0.97
        347
    """
    total = [0.0, 0.0, 0.0, 0.0]
    count = 0
    for state in states:
        for i, p in enumerate(validate(state)):
            total[i] += p
        count += 1
    if not count:
        return 0.0
    mean: BellDiagonal = (total[0] / count, total[1] / count, total[2] / count, total[3] / count)
    return count * secret_bits_per_pair(mean, basis_bias=basis_bias, ec_efficiency=ec_efficiency)


def qber_threshold(ec_efficiency: float = 1.0) -> float:
    """The QBER, equal in both bases, above which no key is left: the root of ``1 = (1 + f) h(e)``.

    Examples:
        >>> round(qber_threshold(), 4)  # Shor-Preskill's 11 %
        0.11
        >>> round(qber_threshold(EC_EFFICIENCY), 4)
        0.0981
    """
    if ec_efficiency < 1.0:
        raise ValueError(f"ec_efficiency must be >= 1 (1 is the Shannon limit), got {ec_efficiency!r}")
    root = brentq(lambda e: 1.0 - (1.0 + ec_efficiency) * float(binary_entropy(float(e))), 1e-9, 0.5, xtol=1e-12)
    return float(root)
