"""The parts of an entanglement network, as the network layer sees them: memories and elementary links.

A :class:`MemoryModel` says how many qubits a router stores, how they decay and when they are cut off.
A :class:`LinkModel` is an elementary link between two routers with a Bell-state-measurement station in
the middle: from its fibre, detectors and heralding scheme it derives the three numbers the simulation
needs, the per-attempt success probability, the duration of an attempt and the state of a heralded
pair (:mod:`qnet.physics.heralding` has the physics and its sources). The simulation samples the number
of attempts until success (geometric) instead of running every attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qnet.physics import bell, heralding
from qnet.physics.bell import BellDiagonal
from qnet.physics.channels import fibre_transmittance
from qnet.quantum.entanglement.states import Decay

__all__ = ["FIBRE_S_PER_KM", "SCHEMES", "LinkModel", "MemoryModel"]

FIBRE_S_PER_KM = 5e-6
"""Light in fibre (group index ~1.47): 5 us per km, the classical and quantum signals' delay."""

SCHEMES = ("barrett_kok", "single_heralded", "single_click", "ideal")


@dataclass(frozen=True)
class MemoryModel:
    """A router's quantum memories.

    Attributes:
        count: qubits the router stores (shared among its links and requests).
        efficiency: probability that a memory emits (or absorbs) its photon when asked.
        decay: T1/T2 or a depolarising coherence time (:class:`~qnet.quantum.entanglement.states.Decay`).
        cutoff_s: a stored qubit older than this is discarded and its memory freed (``inf``: never).
        frequency_hz: how often a memory can be re-excited (bounds the attempt rate).
    """

    count: int = 10
    efficiency: float = 1.0
    decay: Decay = field(default_factory=Decay)
    cutoff_s: float = math.inf
    frequency_hz: float = 2e6

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"memory count must be >= 1, got {self.count!r}")
        if not 0.0 < self.efficiency <= 1.0:
            raise ValueError(f"memory efficiency must be in (0, 1], got {self.efficiency!r}")
        if not self.cutoff_s > 0:
            raise ValueError(f"memory cutoff_s must be > 0, got {self.cutoff_s!r}")
        if not self.frequency_hz > 0:
            raise ValueError(f"memory frequency_hz must be > 0, got {self.frequency_hz!r}")


@dataclass(frozen=True)
class LinkModel:
    """An elementary link: two routers, fibre to a BSM station at ``station_fraction`` of the way.

    Attributes:
        length_km: router to router.
        scheme: ``barrett_kok`` (two-click, two rounds), ``single_heralded`` (one round with the
            Barrett-Kok success probability: SeQUeNCe's "single heralded" generation),
            ``single_click`` (one round, bright-state parameter ``bright_state``) or ``ideal``
            (``success_probability`` and ``attempt_s`` given).
        negotiation_delays: router-to-router one-way delays the two ends spend agreeing on each
            attempt before they emit (SeQUeNCe's request, response and negotiation: 3); 0 for a link
            that emits on a clock.
        raw_fidelity: the heralded pair's fidelity (a Werner state); ``None`` takes it from the scheme.
    """

    length_km: float
    attenuation_db_per_km: float = 0.2
    detector_efficiency: float = 0.9
    dark_count_probability: float = 0.0
    scheme: str = "barrett_kok"
    bright_state: float = 0.1
    raw_fidelity: float | None = None
    station_fraction: float = 0.5
    negotiation_delays: int = 0
    success_probability_override: float | None = None
    attempt_s_override: float | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"link scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if not self.length_km >= 0:
            raise ValueError(f"link length_km must be >= 0, got {self.length_km!r}")
        if not 0.0 < self.detector_efficiency <= 1.0:
            raise ValueError(f"detector_efficiency must be in (0, 1], got {self.detector_efficiency!r}")
        if not self.attenuation_db_per_km >= 0:
            raise ValueError(f"attenuation_db_per_km must be >= 0, got {self.attenuation_db_per_km!r}")
        if not 0.0 <= self.dark_count_probability <= 1.0:
            raise ValueError(f"dark_count_probability must be in [0, 1], got {self.dark_count_probability!r}")
        if not 0.0 < self.bright_state < 1.0:
            raise ValueError(f"bright_state must be in (0, 1), got {self.bright_state!r}")
        if not 0.0 <= self.station_fraction <= 1.0:
            raise ValueError(f"station_fraction must be in [0, 1], got {self.station_fraction!r}")
        if self.raw_fidelity is not None and not 0.25 <= self.raw_fidelity <= 1.0:
            raise ValueError(f"raw_fidelity must be in [0.25, 1], got {self.raw_fidelity!r}")
        if self.scheme == "ideal" and (self.success_probability_override is None or self.attempt_s_override is None):
            raise ValueError("an 'ideal' link needs success_probability_override and attempt_s_override")

    @property
    def delay_s(self) -> float:
        """Router-to-router signal delay."""
        return self.length_km * FIBRE_S_PER_KM

    def arm_transmittances(self, memory: MemoryModel) -> tuple[float, float]:
        """Probability that each end's photon is detected at the station (memory, fibre, detector)."""
        legs = (self.length_km * self.station_fraction, self.length_km * (1 - self.station_fraction))
        return tuple(memory.efficiency * float(fibre_transmittance(leg, self.attenuation_db_per_km))
                     * self.detector_efficiency for leg in legs)  # type: ignore[return-value]

    def success_probability(self, memory: MemoryModel) -> float:
        """Probability that one attempt heralds a pair."""
        if self.success_probability_override is not None:
            return self.success_probability_override
        eta_a, eta_b = self.arm_transmittances(memory)
        if self.scheme == "single_click":
            return heralding.single_click(eta_a, eta_b, self.bright_state, self.dark_count_probability).probability
        return heralding.barrett_kok(eta_a, eta_b, self.dark_count_probability).probability

    def attempt_s(self, memory: MemoryModel) -> float:
        """Duration of one attempt: the photon's way to the station and the herald's way back (each round
        of Barrett-Kok needs its herald), never shorter than the memory's re-excitation period."""
        if self.attempt_s_override is not None:
            return self.attempt_s_override
        return self.negotiation_delays * self.delay_s + self.emission_to_herald_s(memory)

    def emission_to_herald_s(self, memory: MemoryModel) -> float:
        """From the (first) emission to the herald's arrival at the ends: the qubits are stored meanwhile."""
        if self.attempt_s_override is not None:
            return self.attempt_s_override / 2
        far_leg = max(self.station_fraction, 1 - self.station_fraction) * self.length_km
        rounds = 2 if self.scheme == "barrett_kok" else 1
        return rounds * max(2 * far_leg * FIBRE_S_PER_KM, 1.0 / memory.frequency_hz)

    def initial_state(self, memory: MemoryModel) -> BellDiagonal:
        """The heralded pair's Bell-diagonal state."""
        if self.raw_fidelity is not None:
            return bell.werner(self.raw_fidelity)
        eta_a, eta_b = self.arm_transmittances(memory)
        if self.scheme == "single_click":
            return heralding.single_click(eta_a, eta_b, self.bright_state, self.dark_count_probability).bell
        if self.scheme in ("barrett_kok", "single_heralded"):
            return heralding.barrett_kok(eta_a, eta_b, self.dark_count_probability).bell
        return bell.PHI_PLUS
