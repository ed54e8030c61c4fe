"""Bell-diagonal states of two qubits and what repeaters do to them: swap, purify, decohere.

A Bell-diagonal state is a mixture of the four Bell states. It is written here as the distribution of
the Pauli error on one qubit of ``|Phi+>``, as a 4-tuple in the order ``(I, Z, X, Y)``:

====== ======== =================
index  error    Bell state
====== ======== =================
0      I        Phi+ = (00+11)/√2
1      Z        Phi- = (00-11)/√2
2      X        Psi+ = (01+10)/√2
3      Y        Psi- = (01-10)/√2
====== ======== =================

The index is the error's bits ``2 x + z``, so composing two Pauli errors is the XOR of their indices.
That makes the class closed and exact under everything a repeater chain does with Pauli noise
(Dür, Briegel, Cirac, Zoller, PRA 59, 169 (1999); Dür & Briegel, Rep. Prog. Phys. 70, 1381 (2007)):

- a Pauli channel on either qubit (``P⊗1 |Phi+> = ±1⊗P |Phi+>``) convolves the coefficients with the
  channel's probabilities over the XOR group: :func:`apply_pauli`;
- a Bell measurement on the middle qubits of two pairs, with the Pauli correction of its outcome,
  leaves the outer pair with the product of both errors: :func:`swap` (for Werner pairs of fidelity F
  this gives ``F' = F^2 + (1-F)^2/3``, Dür et al. 1999, eq. 8);
- the recurrence purifications of Bennett et al. (BBPSSW, PRL 76, 722 (1996), eq. 2; the pairs
  twirled to Werner form first) and Deutsch et al. (DEJMPS, PRL 77, 2818 (1996), eq. 8-9) map
  Bell-diagonal pairs to Bell-diagonal pairs: :func:`bbpssw`, :func:`dejmps`;
- memory decoherence is Pauli after twirling: T2 dephasing is Pauli exactly, T1 amplitude damping is
  not (its Pauli twirl is the standard approximation; the density-matrix formalism of
  :mod:`qnet.physics.density` keeps it exact): :func:`decay_channel`.

Plain tuples of floats and pure-Python arithmetic: a repeater simulation does millions of these
4-element operations, where numpy's per-call overhead would cost more than the arithmetic.
"""

from __future__ import annotations

import math

__all__ = [
    "PHI_MINUS",
    "PHI_PLUS",
    "PSI_MINUS",
    "PSI_PLUS",
    "BellDiagonal",
    "apply_pauli",
    "bbpssw",
    "decay_channel",
    "dejmps",
    "depolarising_channel",
    "fidelity",
    "swap",
    "validate",
    "werner",
]

BellDiagonal = tuple[float, float, float, float]
"""Probabilities of (Phi+, Phi-, Psi+, Psi-), i.e. of the errors (I, Z, X, Y) on one qubit of Phi+."""

PHI_PLUS: BellDiagonal = (1.0, 0.0, 0.0, 0.0)
PHI_MINUS: BellDiagonal = (0.0, 1.0, 0.0, 0.0)
PSI_PLUS: BellDiagonal = (0.0, 0.0, 1.0, 0.0)
PSI_MINUS: BellDiagonal = (0.0, 0.0, 0.0, 1.0)


def validate(state: BellDiagonal, name: str = "state") -> BellDiagonal:
    """The state as a tuple of four floats; raises ValueError naming ``name`` unless it is a distribution."""
    values = [float(v) for v in state]
    if len(values) != 4 or any(not (v >= -1e-12) for v in values) or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(f"{name} must be four probabilities (Phi+, Phi-, Psi+, Psi-) summing to 1, got {state!r}")
    return (values[0], values[1], values[2], values[3])


def werner(fidelity: float) -> BellDiagonal:
    """The Werner state of fidelity ``F`` with Phi+: ``(F, (1-F)/3, (1-F)/3, (1-F)/3)``.

    Examples:
        >>> werner(0.85)
        (0.85, 0.05000000000000001, 0.05000000000000001, 0.05000000000000001)
    """
    if not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"fidelity must be in [0, 1], got {fidelity!r}")
    rest = (1.0 - fidelity) / 3.0
    return (fidelity, rest, rest, rest)


def fidelity(state: BellDiagonal) -> float:
    """Fidelity with Phi+ (the target every protocol here corrects to)."""
    return state[0]


def _convolve(a: BellDiagonal, b: BellDiagonal) -> BellDiagonal:
    """Distribution of the XOR of two independent errors."""
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return (
        a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3,
        a0 * b1 + a1 * b0 + a2 * b3 + a3 * b2,
        a0 * b2 + a2 * b0 + a1 * b3 + a3 * b1,
        a0 * b3 + a3 * b0 + a1 * b2 + a2 * b1,
    )


def apply_pauli(state: BellDiagonal, channel: BellDiagonal) -> BellDiagonal:
    """The state after a Pauli channel ``(p_I, p_Z, p_X, p_Y)`` on either one of its qubits."""
    return _convolve(state, channel)


def swap(left: BellDiagonal, right: BellDiagonal) -> BellDiagonal:
    """Entanglement swapping with a perfect Bell measurement and Pauli correction.

    Examples:
        >>> f = 0.9
        >>> abs(fidelity(swap(werner(f), werner(f))) - (f**2 + (1 - f) ** 2 / 3)) < 1e-15
        True
    """
    return _convolve(left, right)


def depolarising_channel(p: float) -> BellDiagonal:
    """A single-qubit depolarising channel: with probability ``p`` the qubit is replaced by the maximally
    mixed state, i.e. each Pauli error with probability ``p/4``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"depolarising probability must be in [0, 1], got {p!r}")
    return (1.0 - 0.75 * p, 0.25 * p, 0.25 * p, 0.25 * p)


def decay_channel(t_s: float, t1_s: float = math.inf, t2_s: float = math.inf) -> BellDiagonal:
    """The Pauli channel ``(p_I, p_Z, p_X, p_Y)`` of a qubit stored for ``t_s`` in a memory with energy
    relaxation time T1 and coherence time T2, twirled to Pauli form.

    The T1/T2 channel scales the Bloch vector's x and y by ``a = exp(-t/T2)`` and z by ``b = exp(-t/T1)``
    (plus an offset toward |0> that the twirl removes); a Pauli channel with those eigenvalues has
    ``p_X = p_Y = (1-b)/4``, ``p_Z = (1 - 2a + b)/4``, ``p_I = (1 + 2a + b)/4`` (Nielsen & Chuang, sec. 8.3;
    the twirl: Ghosh, Fowler, Geller, PRA 86, 062318 (2012), eq. 10). ``t1_s = inf`` is pure dephasing.

    Examples:
        >>> decay_channel(0.0, 1.0, 1.0)
        (1.0, 0.0, 0.0, 0.0)
    """
    if t_s < 0 or not t1_s > 0 or not t2_s > 0:
        raise ValueError(f"need t_s >= 0, t1_s > 0 and t2_s > 0, got {t_s!r}, {t1_s!r}, {t2_s!r}")
    if t2_s > 2 * t1_s * (1 + 1e-12):
        raise ValueError(f"t2_s must be <= 2 t1_s (physical qubit), got t1_s={t1_s!r}, t2_s={t2_s!r}")
    a = math.exp(-t_s / t2_s)
    b = math.exp(-t_s / t1_s)
    pxy = (1.0 - b) / 4.0
    return ((1.0 + 2.0 * a + b) / 4.0, (1.0 - 2.0 * a + b) / 4.0, pxy, pxy)


def bbpssw(a: BellDiagonal, b: BellDiagonal) -> tuple[BellDiagonal, float]:
    """One round of BBPSSW on two pairs, each first twirled to Werner form: (the kept pair, success
    probability). Bennett et al., PRL 76, 722 (1996), eq. 2 (written for two pairs of fidelities F1, F2).

    Examples:
        >>> kept, p = bbpssw(werner(0.9), werner(0.9))
        >>> round(fidelity(kept), 6), round(p, 6)
        (0.926396, 0.875556)
    """
    f1, f2 = a[0], b[0]
    e1, e2 = (1.0 - f1) / 3.0, (1.0 - f2) / 3.0
    p = f1 * f2 + f1 * e2 + e1 * f2 + 5.0 * e1 * e2
    if p <= 0.0:
        return werner(0.0), 0.0
    return werner((f1 * f2 + e1 * e2) / p), p


def dejmps(a: BellDiagonal, b: BellDiagonal) -> tuple[BellDiagonal, float]:
    """One round of DEJMPS (Deutsch et al., PRL 77, 2818 (1996), eq. 8-9, with its local rotations):
    (the kept pair, success probability).

    In the paper's notation (A, B, C, D) = (Phi+, Psi-, Psi+, Phi-); for two different pairs the
    products become cross products.

    Examples:
        >>> s, _ = dejmps(werner(0.9), werner(0.9))
        >>> s, _ = dejmps(s, s)
        >>> round(fidelity(s), 6)
        0.988764
    """
    a_phi_p, a_phi_m, a_psi_p, a_psi_m = a
    b_phi_p, b_phi_m, b_psi_p, b_psi_m = b
    keep_a = a_phi_p * b_phi_p + a_psi_m * b_psi_m
    keep_b = a_psi_p * b_psi_p + a_phi_m * b_phi_m
    p = (a_phi_p + a_psi_m) * (b_phi_p + b_psi_m) + (a_psi_p + a_phi_m) * (b_psi_p + b_phi_m)
    if p <= 0.0:
        return werner(0.0), 0.0
    new_psi_m = a_psi_p * b_phi_m + a_phi_m * b_psi_p
    new_phi_m = a_phi_p * b_psi_m + a_psi_m * b_phi_p
    return (keep_a / p, new_phi_m / p, keep_b / p, new_psi_m / p), p
