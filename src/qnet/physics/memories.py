"""Quantum memories: how a stored qubit (or a stored half of an entangled pair) decays with time.

- **T1 and T2 as a Pauli channel.** A qubit stored for a time t undergoes amplitude damping
  (relaxation time T1) and dephasing (coherence time T2 <= 2 T1). Its Pauli transfer matrix has
  diagonal (1, e^{-t/T2}, e^{-t/T2}, e^{-t/T1}); twirling over the Pauli group keeps that diagonal
  and gives the Pauli channel

      p_X = p_Y = (1 - e^{-t/T1}) / 4,    p_Z = (1 + e^{-t/T1} - 2 e^{-t/T2}) / 4,
      p_I = 1 - p_X - p_Y - p_Z = (1 + e^{-t/T1} + 2 e^{-t/T2}) / 4,

  the Pauli twirling approximation of Ghosh, Fowler, Geller, PRA 86, 062318 (2012) (there written
  p_z = 1/2 - p_x - e^{-t/T2}/2, which is the same expression). The twirl is exact for what a
  Bell-diagonal (twirled) pair sees; it drops the non-unital part of amplitude damping.
- **A depolarising memory** of coherence time tau: rho -> lambda rho + (1 - lambda) I/2 with
  lambda = e^{-t/tau}, so p_X = p_Y = p_Z = (1 - lambda)/4. On one qubit of a Werner pair
  rho_w = w Phi+ + (1 - w) I/4 it multiplies the Werner parameter w by lambda (Werner, PRA 40,
  4277 (1989) defines the family; F = (1 + 3 w)/4 is its fidelity to Phi+).
- **Cut-offs**: the storage time after which a pair's fidelity falls below a threshold, for
  cut-off policies (introduced for repeaters by Rozpędek, Goodenough et al., "Parameter regimes for
  a single sequential quantum repeater", arXiv:1705.00043 (2017); optimised in chains by Li,
  Coopmans, Elkouss, "Efficient optimization of cut-offs in quantum repeater chains" (2021)).

Conventions: a single-qubit Pauli channel is the tuple (p_I, p_X, p_Y, p_Z); a Bell-diagonal pair
is the tuple (I, Z, X, Y) of the weights of Phi+, Phi- (Z on one qubit of Phi+), Psi+ (X) and
Psi- (Y), the order :mod:`qnet.physics.heralding` returns. :func:`apply_pauli_channel` joins the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnet.physics.bell import BellDiagonal, apply_pauli

__all__ = [
    "BellDiagonal",
    "Memory",
    "PauliChannel",
    "apply_pauli_channel",
    "bell_fidelity",
    "depolarising_channel",
    "pauli_twirl_t1_t2",
    "time_to_fidelity_s",
    "werner_fidelity",
    "werner_fidelity_after",
    "werner_parameter",
]

PauliChannel = tuple[float, float, float, float]
"""Probabilities (p_I, p_X, p_Y, p_Z) of a single-qubit Pauli channel."""


# Pauli labels as (x, z) bits: I = (0, 0), Z = (0, 1), X = (1, 0), Y = (1, 1); products add bits mod 2.


def pauli_twirl_t1_t2(storage_s: float, *, t1_s: float, t2_s: float) -> PauliChannel:
    """Pauli-twirled amplitude damping and dephasing after ``storage_s`` (Ghosh et al. 2012).

    Args:
        storage_s: storage time t in seconds, >= 0.
        t1_s: relaxation time T1 in seconds (``math.inf`` for none).
        t2_s: coherence time T2 in seconds, at most 2 T1 (``math.inf`` for none, with T1 infinite).

    Returns:
        (p_I, p_X, p_Y, p_Z).

    Raises:
        ValueError: if a time is not positive, the storage time is negative, or T2 > 2 T1.

    Examples:
        >>> pauli_twirl_t1_t2(0.0, t1_s=1.0, t2_s=1.0)
        (1.0, 0.0, 0.0, 0.0)
        >>> [round(p, 4) for p in pauli_twirl_t1_t2(1.0, t1_s=math.inf, t2_s=1.0)]  # pure dephasing
        [0.6839, 0.0, 0.0, 0.3161]
    """
    _check_times(storage_s, t1_s, t2_s)
    e1, e2 = math.exp(-storage_s / t1_s), math.exp(-storage_s / t2_s)
    p_x = (1.0 - e1) / 4.0
    p_z = (1.0 + e1 - 2.0 * e2) / 4.0
    return (1.0 - 2.0 * p_x - p_z, p_x, p_x, p_z)


def _check_times(storage_s: float, t1_s: float, t2_s: float) -> None:
    if storage_s < 0:
        raise ValueError(f"storage_s must be >= 0, got {storage_s!r}")
    if not t1_s > 0:
        raise ValueError(f"t1_s must be > 0, got {t1_s!r}")
    if not t2_s > 0:
        raise ValueError(f"t2_s must be > 0, got {t2_s!r}")
    if t2_s > 2.0 * t1_s:
        raise ValueError(f"t2_s must be <= 2 * t1_s (physical decoherence), got t1_s={t1_s!r}, t2_s={t2_s!r}")


def depolarising_channel(storage_s: float, coherence_time_s: float) -> PauliChannel:
    """Pauli channel of a depolarising memory: lambda = exp(-t / tau), p_X = p_Y = p_Z = (1 - lambda)/4.

    Examples:
        >>> [round(p, 4) for p in depolarising_channel(1.0, 1.0)]
        [0.5259, 0.158, 0.158, 0.158]
    """
    if storage_s < 0 or not coherence_time_s > 0:
        raise ValueError(f"need storage_s >= 0 and coherence_time_s > 0, got {storage_s!r}, {coherence_time_s!r}")
    p = (1.0 - math.exp(-storage_s / coherence_time_s)) / 4.0
    return (1.0 - 3.0 * p, p, p, p)


def apply_pauli_channel(bell: BellDiagonal, channel: PauliChannel) -> BellDiagonal:
    """The Bell-diagonal state after a Pauli channel acts on one of its qubits.

    A Pauli P on one qubit maps the Bell state (Q (x) I) Phi+ to (PQ (x) I) Phi+ up to a phase, so
    the weights combine by the product of Pauli labels (Klein group).

    Args:
        bell: weights (I, Z, X, Y) of Phi+, Phi-, Psi+, Psi-.
        channel: (p_I, p_X, p_Y, p_Z).

    Examples:
        >>> apply_pauli_channel((1.0, 0.0, 0.0, 0.0), (0.7, 0.1, 0.0, 0.2))  # Phi+ -> (I, Z, X, Y)
        (0.7, 0.2, 0.1, 0.0)
        >>> apply_pauli_channel((0.0, 1.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0))  # X on Phi- gives Psi-
        (0.0, 0.0, 0.0, 1.0)
    """
    p_i, p_x, p_y, p_z = channel
    return apply_pauli(bell, (p_i, p_z, p_x, p_y))


def bell_fidelity(bell: BellDiagonal) -> float:
    """Fidelity of a Bell-diagonal state to Phi+: its first weight."""
    return bell[0]


def werner_fidelity(werner: float) -> float:
    """Fidelity (1 + 3 w)/4 to Phi+ of the Werner state w Phi+ + (1 - w) I/4.

    Examples:
        >>> werner_fidelity(1.0), werner_fidelity(0.0)
        (1.0, 0.25)
    """
    return (1.0 + 3.0 * werner) / 4.0


def werner_parameter(fidelity: float) -> float:
    """Werner parameter w = (4 F - 1)/3 of the Werner state of fidelity F."""
    return (4.0 * fidelity - 1.0) / 3.0


def werner_fidelity_after(storage_s: float, *, coherence_time_s: float, fidelity0: float = 1.0,
                          qubits: int = 1) -> float:
    """Fidelity of a Werner pair after ``storage_s``: w(t) = w0 exp(-qubits * t / tau).

    Args:
        storage_s: time both halves have been stored, seconds.
        coherence_time_s: tau of each depolarising memory, seconds.
        fidelity0: fidelity when storage began.
        qubits: how many of the pair's qubits sit in such a memory (1 or 2).

    Examples:
        >>> round(werner_fidelity_after(1.0, coherence_time_s=1.0), 4)
        0.5259
        >>> round(werner_fidelity_after(0.5, coherence_time_s=1.0, qubits=2), 4)  # same decay
        0.5259
    """
    if qubits not in (1, 2):
        raise ValueError(f"qubits must be 1 or 2, got {qubits!r}")
    lam = 1.0 - 4.0 * depolarising_channel(storage_s, coherence_time_s)[1]
    return werner_fidelity(werner_parameter(fidelity0) * lam**qubits)


def time_to_fidelity_s(threshold: float, *, coherence_time_s: float, fidelity0: float = 1.0,
                       qubits: int = 1) -> float:
    """Storage time after which a Werner pair's fidelity falls to ``threshold``: the cut-off time
    t = (tau / qubits) ln(w0 / w_threshold).

    Returns 0 if the pair starts at or below the threshold and ``math.inf`` for a threshold at or
    below 1/4 (the fidelity of the fully mixed state, never crossed).

    Examples:
        >>> round(time_to_fidelity_s(0.8, coherence_time_s=1.0), 4)  # ln(1 / 0.7333)
        0.3102
    """
    if not coherence_time_s > 0 or qubits not in (1, 2):
        raise ValueError(f"need coherence_time_s > 0 and qubits in (1, 2), got {coherence_time_s!r}, {qubits!r}")
    if threshold <= 0.25:
        return math.inf
    if fidelity0 <= threshold:
        return 0.0
    return coherence_time_s / qubits * math.log(werner_parameter(fidelity0) / werner_parameter(threshold))


@dataclass(frozen=True, kw_only=True)
class Memory:
    """A node's quantum memory: efficiency, T1, T2, an optional cut-off, and how many qubits it holds.

    Attributes:
        efficiency: probability that a stored qubit can be read out (retrieval or readout), in [0, 1].
        t1_s: relaxation time T1, seconds (``math.inf``: none).
        t2_s: coherence time T2, seconds, <= 2 T1 (``math.inf``: none, needs T1 infinite).
        cutoff_s: storage time after which a stored qubit is discarded; ``None`` for no cut-off.
        count: number of memory qubits at the node, >= 1.

    Examples:
        >>> m = Memory(efficiency=0.9, t1_s=10.0, t2_s=1.0, cutoff_s=0.5)
        >>> m.usable(0.4), m.usable(0.6)
        (True, False)
        >>> Memory(efficiency=1.2)
        Traceback (most recent call last):
        ...
        ValueError: Memory.efficiency must be in [0, 1], got 1.2
    """

    efficiency: float = 1.0
    t1_s: float = math.inf
    t2_s: float = math.inf
    cutoff_s: float | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.efficiency <= 1.0:
            raise ValueError(f"Memory.efficiency must be in [0, 1], got {self.efficiency!r}")
        for name in ("t1_s", "t2_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Memory.{name} must be > 0, got {getattr(self, name)!r}")
        if self.t2_s > 2.0 * self.t1_s:
            raise ValueError(f"Memory.t2_s must be <= 2 * t1_s, got t1_s={self.t1_s!r}, t2_s={self.t2_s!r}")
        if self.cutoff_s is not None and not self.cutoff_s > 0:
            raise ValueError(f"Memory.cutoff_s must be > 0 or None, got {self.cutoff_s!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"Memory.count must be an integer >= 1, got {self.count!r}")

    def pauli_channel(self, storage_s: float) -> PauliChannel:
        """The twirled T1/T2 channel (p_I, p_X, p_Y, p_Z) after ``storage_s``."""
        return pauli_twirl_t1_t2(storage_s, t1_s=self.t1_s, t2_s=self.t2_s)

    def usable(self, storage_s: float) -> bool:
        """Whether a qubit stored for ``storage_s`` is still within the cut-off."""
        return self.cutoff_s is None or storage_s <= self.cutoff_s
