"""Pair states behind one interface, chosen per simulation (not globally): ``formalism("bell_diagonal")``.

A formalism holds the states of the pairs of one run and does to them what a repeater does: create a
pair from its heralded Bell-diagonal state, let each qubit decay in its memory, swap two pairs, purify
two pairs (sampling success), read a pair's fidelity. A pair's two qubits are ordered: qubit 0 sits at
the end nearer the start of the path. Three formalisms:

- ``bell_diagonal`` (:mod:`qnet.physics.bell`): four numbers per pair, exact under Pauli noise; the
  workhorse of repeater chains;
- ``density_matrix`` (:mod:`qnet.physics.density`): the 4x4 matrix, exact under any noise (T1 amplitude
  damping included); slower, for small systems;
- ``stabilizer``: one stim ``TableauSimulator`` (Gidney, Quantum 5, 497 (2021)) holds every stored
  qubit; noise is sampled as Pauli errors, swaps and DEJMPS are Clifford circuits with real
  measurements, and a pair's fidelity is read from its stabilizers (``<XX>``, ``<YY>``, ``<ZZ>``), so
  each run is one sample and the mean over pairs estimates the fidelity. For large Clifford networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from qnet.physics import bell
from qnet.physics import density as dm
from qnet.physics.bell import BellDiagonal

__all__ = ["FORMALISMS", "Decay", "Formalism", "formalism"]


@dataclass(frozen=True, slots=True)
class Decay:
    """How a memory's stored qubit decays: T1 (amplitude damping), T2 (dephasing), or a depolarising
    coherence time (the Werner parameter falls as ``exp(-t/coherence_s)``); ``inf`` is no decay."""

    t1_s: float = math.inf
    t2_s: float = math.inf
    coherence_s: float = math.inf

    def __post_init__(self) -> None:
        for name in ("t1_s", "t2_s", "coherence_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"memory {name} must be > 0 (inf: no decay), got {getattr(self, name)!r}")

    def pauli(self, t_s: float) -> BellDiagonal:
        """The (twirled) Pauli channel of ``t_s`` of storage."""
        channel = bell.decay_channel(t_s, self.t1_s, min(self.t2_s, 2 * self.t1_s))
        if math.isfinite(self.coherence_s):
            channel = bell.apply_pauli(channel, bell.depolarising_channel(1.0 - math.exp(-t_s / self.coherence_s)))
        return channel

    @property
    def none(self) -> bool:
        return not (math.isfinite(self.t1_s) or math.isfinite(self.t2_s) or math.isfinite(self.coherence_s))


class Formalism(Protocol):
    """What the network layer asks of pair states; a pair is an opaque handle."""

    name: str

    def create(self, state: BellDiagonal) -> Any:
        """A new pair in the Bell-diagonal state of its heralding."""
        ...

    def decay(self, pair: Any, qubit: int, t_s: float, decay: Decay) -> Any:
        """The pair after qubit 0 or 1 has been stored ``t_s`` more."""
        ...

    def swap(self, left: Any, right: Any, noise: BellDiagonal) -> Any:
        """Swap (a, r) and (r, b) into (a, b); ``noise`` is a Pauli channel the BSM adds."""
        ...

    def purify(self, keep: Any, sacrifice: Any, protocol: str, rng: np.random.Generator) -> Any | None:
        """One purification round on two pairs of the same ends: the kept pair, or None when it failed."""
        ...

    def fidelity(self, pair: Any) -> float:
        """Fidelity with Phi+ (a 0/1-like sample for the stabilizer formalism)."""
        ...

    def discard(self, pair: Any) -> None:
        """The pair's qubits are reset (memories freed)."""
        ...


class BellDiagonalFormalism:
    """Pairs as :data:`~qnet.physics.bell.BellDiagonal` tuples; swaps and purifications are exact."""

    name = "bell_diagonal"

    def create(self, state: BellDiagonal) -> BellDiagonal:
        return state

    def decay(self, pair: BellDiagonal, qubit: int, t_s: float, decay: Decay) -> BellDiagonal:
        if t_s <= 0 or decay.none:
            return pair
        return bell.apply_pauli(pair, decay.pauli(t_s))

    def swap(self, left: BellDiagonal, right: BellDiagonal, noise: BellDiagonal) -> BellDiagonal:
        out = bell.swap(left, right)
        return out if noise == bell.PHI_PLUS else bell.apply_pauli(out, noise)

    def purify(self, keep: BellDiagonal, sacrifice: BellDiagonal, protocol: str,
               rng: np.random.Generator) -> BellDiagonal | None:
        kept, p = _PURIFY_BD[protocol](keep, sacrifice)
        return kept if rng.random() < p else None

    def fidelity(self, pair: BellDiagonal) -> float:
        return pair[0]

    def discard(self, pair: BellDiagonal) -> None:
        return None


_PURIFY_BD = {"dejmps": bell.dejmps, "bbpssw": bell.bbpssw}


class DensityMatrixFormalism:
    """Pairs as 4x4 density matrices; T1 amplitude damping exact."""

    name = "density_matrix"

    def create(self, state: BellDiagonal) -> dm.Matrix:
        return dm.bell_diagonal_matrix(state)

    def decay(self, pair: dm.Matrix, qubit: int, t_s: float, decay: Decay) -> dm.Matrix:
        if t_s <= 0 or decay.none:
            return pair
        out = dm.apply_kraus(pair, dm.decay_kraus(t_s, decay.t1_s, min(decay.t2_s, 2 * decay.t1_s)), [qubit])
        if math.isfinite(decay.coherence_s):
            p = 1.0 - math.exp(-t_s / decay.coherence_s)
            out = dm.apply_kraus(out, dm.pauli_channel(bell.depolarising_channel(p)), [qubit])
        return out

    def swap(self, left: dm.Matrix, right: dm.Matrix, noise: BellDiagonal) -> dm.Matrix:
        out = dm.swap(left, right)
        return out if noise == bell.PHI_PLUS else dm.apply_kraus(out, dm.pauli_channel(noise), [1])

    def purify(self, keep: dm.Matrix, sacrifice: dm.Matrix, protocol: str,
               rng: np.random.Generator) -> dm.Matrix | None:
        if protocol == "bbpssw":
            twirl = [dm.bell_diagonal_matrix(bell.werner(dm.fidelity(r))) for r in (keep, sacrifice)]
            kept, p = dm.dejmps(*twirl)
            kept = dm.bell_diagonal_matrix(bell.werner(dm.fidelity(kept)))
        else:
            kept, p = dm.dejmps(keep, sacrifice)
        return kept if rng.random() < p else None

    def fidelity(self, pair: dm.Matrix) -> float:
        return dm.fidelity(pair)

    def discard(self, pair: dm.Matrix) -> None:
        return None


class StabilizerFormalism:
    """Pairs as two qubits of one stim ``TableauSimulator``; Pauli noise sampled, measurements real."""

    name = "stabilizer"

    def __init__(self, seed: int = 0) -> None:
        import stim  # noqa: PLC0415 - only runs that choose this formalism need stim loaded

        self._stim = stim
        self.sim = stim.TableauSimulator(seed=seed)
        self._rng = np.random.default_rng(seed)
        self._free: list[int] = []
        self._next = 0

    def _qubit(self) -> int:
        if self._free:
            return self._free.pop()
        self._next += 1
        return self._next - 1

    def _pauli(self, qubit: int, channel: BellDiagonal) -> None:
        k = int(self._rng.choice(4, p=np.clip(np.asarray(channel), 0.0, None) / sum(channel)))
        if k & 2:
            self.sim.x(qubit)
        if k & 1:
            self.sim.z(qubit)

    def create(self, state: BellDiagonal) -> tuple[int, int]:
        a, b = self._qubit(), self._qubit()
        self.sim.reset(a, b)
        self.sim.h(a)
        self.sim.cx(a, b)
        self._pauli(b, state)
        return (a, b)

    def decay(self, pair: tuple[int, int], qubit: int, t_s: float, decay: Decay) -> tuple[int, int]:
        if t_s > 0 and not decay.none:
            self._pauli(pair[qubit], decay.pauli(t_s))
        return pair

    def swap(self, left: tuple[int, int], right: tuple[int, int], noise: BellDiagonal) -> tuple[int, int]:
        a, r1 = left
        r2, b = right
        self.sim.cx(r1, r2)
        self.sim.h(r1)
        z_fix, x_fix = self.sim.measure(r1), self.sim.measure(r2)
        if x_fix:
            self.sim.x(b)
        if z_fix:
            self.sim.z(b)
        self._release(r1, r2)
        if noise != bell.PHI_PLUS:
            self._pauli(b, noise)
        return (a, b)

    def purify(self, keep: tuple[int, int], sacrifice: tuple[int, int], protocol: str,
               rng: np.random.Generator) -> tuple[int, int] | None:
        if protocol != "dejmps":
            raise ValueError("the stabilizer formalism runs DEJMPS only (BBPSSW's twirl is not one circuit)")
        (a1, b1), (a2, b2) = keep, sacrifice
        self.sim.sqrt_x(a1, a2)
        self.sim.sqrt_x_dag(b1, b2)
        self.sim.cx(a1, a2, b1, b2)
        same = self.sim.measure(a2) == self.sim.measure(b2)
        self._release(a2, b2)
        if same:
            return keep
        self.discard(keep)
        return None

    def fidelity(self, pair: tuple[int, int]) -> float:
        a, b = pair
        n = max(a, b) + 1
        expect = {}
        for p in "XYZ":
            s = self._stim.PauliString(n)
            s[a] = p
            s[b] = p
            expect[p] = self.sim.peek_observable_expectation(s)
        return float(1 + expect["X"] - expect["Y"] + expect["Z"]) / 4

    def discard(self, pair: tuple[int, int]) -> None:
        self._release(*pair)

    def _release(self, *qubits: int) -> None:
        self.sim.reset(*qubits)
        self._free.extend(qubits)


FORMALISMS = ("bell_diagonal", "density_matrix", "stabilizer")


def formalism(name: str, seed: int = 0) -> Formalism:
    """A fresh formalism by name (one per simulation run)."""
    if name == "bell_diagonal":
        return BellDiagonalFormalism()
    if name == "density_matrix":
        return DensityMatrixFormalism()
    if name == "stabilizer":
        return StabilizerFormalism(seed)
    raise ValueError(f"unknown formalism {name!r}; choose one of {', '.join(FORMALISMS)}")
