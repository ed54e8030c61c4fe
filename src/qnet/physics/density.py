"""Density matrices of a few qubits: exact states under any noise, for small systems.

The exact counterpart of :mod:`qnet.physics.bell`: the same operations (swap, purify, decohere) done
on the full 4x4 (or 16x16 during a two-pair operation) matrix, so that amplitude damping, which is not
a Pauli channel, stays exact, and so that the Bell-diagonal formalism can be checked against it on
Pauli-noise scenarios (they agree to rounding; ``tests/physics/test_states.py``).

Qubit 0 is the most significant bit of the basis index. Channels are given by Kraus operators
(Nielsen & Chuang, sec. 8.2-8.3): amplitude damping ``K0 = [[1, 0], [0, sqrt(1-g)]], K1 = [[0, sqrt(g)],
[0, 0]]`` with ``g = 1 - exp(-t/T1)``, and pure dephasing with ``exp(-t/T_phi)``, ``1/T_phi = 1/T2 - 1/(2 T1)``.
The swap is the Bell measurement on the middle qubits followed by the Pauli correction of each outcome,
summed over the four outcomes (deterministic, as a perfect BSM with feed-forward); DEJMPS is the bilateral
CNOT of Deutsch et al. (PRL 77, 2818 (1996)) after the rotations ``Rx(pi/2)`` on A and ``Rx(-pi/2)`` on B,
keeping the pair when both target measurements agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from qnet.physics.bell import BellDiagonal

__all__ = [
    "BELL_VECTORS",
    "amplitude_damping_kraus",
    "apply_kraus",
    "apply_unitary",
    "bell_coefficients",
    "bell_diagonal_matrix",
    "decay_kraus",
    "dejmps",
    "dephasing_kraus",
    "fidelity",
    "partial_trace",
    "pauli_channel",
    "swap",
]

Matrix = npt.NDArray[Any]

_S = 1.0 / math.sqrt(2.0)
BELL_VECTORS: tuple[Matrix, ...] = tuple(
    np.array(v, dtype=complex) * _S
    for v in ([1, 0, 0, 1], [1, 0, 0, -1], [0, 1, 1, 0], [0, 1, -1, 0])
)
"""Phi+, Phi-, Psi+, Psi- in the basis |00>, |01>, |10>, |11> (the order of :mod:`qnet.physics.bell`)."""

_I2 = np.eye(2, dtype=complex)
_X = np.array([[0, 1], [1, 0]], dtype=complex)
_Y = np.array([[0, -1j], [1j, 0]], dtype=complex)
_Z = np.array([[1, 0], [0, -1]], dtype=complex)
PAULIS: tuple[Matrix, ...] = (_I2, _Z, _X, _Y)
_CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)


def bell_diagonal_matrix(state: BellDiagonal) -> Matrix:
    """The 4x4 density matrix of a Bell-diagonal state."""
    return sum((p * np.outer(v, v.conj()) for p, v in zip(state, BELL_VECTORS, strict=True)),
               start=np.zeros((4, 4), dtype=complex))


def bell_coefficients(rho: Matrix) -> BellDiagonal:
    """The Bell-basis diagonal of a two-qubit density matrix (its Bell-diagonal twirl)."""
    values = [float(np.real(v.conj() @ rho @ v)) for v in BELL_VECTORS]
    return (values[0], values[1], values[2], values[3])


def fidelity(rho: Matrix, target: int = 0) -> float:
    """Fidelity ``<B|rho|B>`` with a Bell state (0 = Phi+)."""
    v = BELL_VECTORS[target]
    return float(np.real(v.conj() @ rho @ v))


def _embed(op: Matrix, qubits: Sequence[int], n: int) -> Matrix:
    """``op`` on ``qubits`` (in that order) of an n-qubit register, as a 2^n x 2^n matrix."""
    k = len(qubits)
    rest = [q for q in range(n) if q not in qubits]
    perm = list(qubits) + rest
    full = np.kron(op, np.eye(2 ** (n - k), dtype=complex))
    # full acts on qubits in order ``perm``; permute its tensor axes back to 0..n-1
    t = full.reshape([2] * (2 * n))
    inverse = np.argsort(perm)
    axes = [int(i) for i in inverse] + [n + int(i) for i in inverse]
    return t.transpose(axes).reshape(2**n, 2**n)


def apply_unitary(rho: Matrix, unitary: Matrix, qubits: Sequence[int]) -> Matrix:
    """``U rho U^dagger`` with ``U`` acting on ``qubits``."""
    n = rho.shape[0].bit_length() - 1
    u = _embed(unitary, qubits, n)
    return u @ rho @ u.conj().T


def apply_kraus(rho: Matrix, kraus: Sequence[Matrix], qubits: Sequence[int]) -> Matrix:
    """The channel ``sum_k K rho K^dagger`` with each ``K`` acting on ``qubits``."""
    n = rho.shape[0].bit_length() - 1
    out = np.zeros_like(rho)
    for k in kraus:
        big = _embed(k, qubits, n)
        out += big @ rho @ big.conj().T
    return out


def partial_trace(rho: Matrix, keep: Sequence[int]) -> Matrix:
    """The reduced state of the qubits ``keep`` (in that order)."""
    n = rho.shape[0].bit_length() - 1
    t = rho.reshape([2] * (2 * n))
    drop = [q for q in range(n) if q not in keep]
    for count, q in enumerate(sorted(drop, reverse=True)):
        m = n - count
        t = np.trace(t, axis1=q, axis2=q + m)
    k = len(keep)
    order = sorted(keep)
    perm = [order.index(q) for q in keep]
    t = t.transpose(perm + [k + p for p in perm])
    return t.reshape(2**k, 2**k)


def pauli_channel(probabilities: BellDiagonal) -> list[Matrix]:
    """Kraus operators of the Pauli channel ``(p_I, p_Z, p_X, p_Y)``."""
    return [math.sqrt(max(p, 0.0)) * m for p, m in zip(probabilities, PAULIS, strict=True)]


def amplitude_damping_kraus(gamma: float) -> list[Matrix]:
    """Amplitude damping with decay probability ``gamma`` (|1> -> |0>)."""
    return [np.array([[1, 0], [0, math.sqrt(1 - gamma)]], dtype=complex),
            np.array([[0, math.sqrt(gamma)], [0, 0]], dtype=complex)]


def dephasing_kraus(lam: float) -> list[Matrix]:
    """Pure dephasing that multiplies the coherences by ``lam``."""
    p = (1.0 - lam) / 2.0
    return [math.sqrt(1 - p) * _I2, math.sqrt(p) * _Z]


def decay_kraus(t_s: float, t1_s: float = math.inf, t2_s: float = math.inf) -> list[Matrix]:
    """Kraus operators of T1 amplitude damping followed by the pure dephasing that makes up T2."""
    if t_s < 0 or not t1_s > 0 or not t2_s > 0 or t2_s > 2 * t1_s * (1 + 1e-12):
        raise ValueError(f"need t_s >= 0 and 0 < t2_s <= 2 t1_s, got {t_s!r}, {t1_s!r}, {t2_s!r}")
    gamma = 1.0 - math.exp(-t_s / t1_s)
    rate_phi = max(1.0 / t2_s - 0.5 / t1_s, 0.0)
    lam = math.exp(-t_s * rate_phi)
    return [d @ a for d in dephasing_kraus(lam) for a in amplitude_damping_kraus(gamma)]


def swap(left: Matrix, right: Matrix) -> Matrix:
    """Swap pairs (0,1) and (2,3): Bell measurement on qubits 1 and 2, the outcome's Pauli correction on
    qubit 3, summed over outcomes; the state of (0, 3)."""
    joint = np.kron(left, right)
    out = np.zeros((4, 4), dtype=complex)
    for outcome, bell in enumerate(BELL_VECTORS):
        projector = np.outer(bell, bell.conj())
        proj = _embed(projector, [1, 2], 4)
        post = proj @ joint @ proj
        post = apply_unitary(post, PAULIS[outcome], [3])
        out += partial_trace(post, [0, 3])
    return out


def _rx(theta: float) -> Matrix:
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -1j * s], [-1j * s, c]], dtype=complex)


def dejmps(a: Matrix, b: Matrix) -> tuple[Matrix, float]:
    """DEJMPS on pairs ``a`` = (0, 1) and ``b`` = (2, 3): (the kept pair (0, 1), success probability)."""
    joint = np.kron(a, b)
    for q, theta in ((0, math.pi / 2), (1, -math.pi / 2), (2, math.pi / 2), (3, -math.pi / 2)):
        joint = apply_unitary(joint, _rx(theta), [q])
    joint = apply_unitary(joint, _CNOT, [0, 2])
    joint = apply_unitary(joint, _CNOT, [1, 3])
    kept = np.zeros((4, 4), dtype=complex)
    for bit in (0, 1):
        ket = np.zeros(4, dtype=complex)
        ket[3 * bit] = 1.0  # |00> or |11> on the targets
        proj = _embed(np.outer(ket, ket), [2, 3], 4)
        kept += partial_trace(proj @ joint @ proj, [0, 1])
    p = float(np.real(np.trace(kept)))
    return (kept / p if p > 0 else kept), p
