"""What an entanglement-network run measured: pairs, rate, fidelity, latency, memory occupancy, and the
repeaterless bound the rate is compared with.

The bound: no repeaterless protocol over the whole path (transmittance eta) distributes more than
``-log2(1 - eta)`` ebits per channel use (Pirandola, Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043
(2017), eq. 19); the report multiplies it by the memories' mode rate (their ``frequency_hz``), the number
of channel uses per second a direct link driven by the same hardware would get.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qnet.physics.bounds import plob_bound
from qnet.physics.channels import fibre_transmittance
from qnet.quantum.entanglement.topology import Reservation

__all__ = ["Delivery", "FlowReport", "Report", "flow_report"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One end-to-end pair handed to the application: when, its fidelity then, the age of its older
    qubit (storage to delivery), and its Bell-diagonal state (``None`` in the stabilizer formalism,
    whose pairs are samples)."""

    time_s: float
    fidelity: float
    age_s: float
    state: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class FlowReport:
    """One request's outcome."""

    source: str
    destination: str
    hops: int
    distance_km: float
    memories_per_link: int
    pairs: int
    rate_hz: float
    fidelity_mean: float
    fidelity_ci95: float
    first_pair_s: float | None
    age_mean_s: float
    repeaterless_bound_hz: float
    deliveries: tuple[Delivery, ...]

    def to_dict(self, *, with_deliveries: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_deliveries:
            out.pop("deliveries")
        return out


@dataclass(frozen=True)
class Report:
    """The run's outcome: one :class:`FlowReport` per admitted request, refusals, counters, occupancy."""

    duration_s: float
    formalism: str
    order: str
    flows: tuple[FlowReport, ...]
    refused: tuple[tuple[str, str, str], ...]
    events: int
    swaps: int
    swap_failures: int
    purifications: int
    purification_failures: int
    cutoffs: int
    memory_occupancy: float

    @property
    def pairs(self) -> int:
        return sum(f.pairs for f in self.flows)

    def to_dict(self, *, with_deliveries: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "flows"}
        out["flows"] = [f.to_dict(with_deliveries=with_deliveries) for f in self.flows]
        out["pairs"] = self.pairs
        return out


def flow_report(reservation: Reservation, deliveries: list[Delivery], duration_s: float, *,
                attenuation_db_per_km: float, mode_rate_hz: float) -> FlowReport:
    """One request's :class:`FlowReport` from its reservation and its delivered pairs."""
    path = reservation.path
    fidelities = np.array([d.fidelity for d in deliveries])
    n = len(fidelities)
    mean = float(fidelities.mean()) if n else math.nan
    ci = float(1.96 * fidelities.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    request = reservation.request
    active = max(min(duration_s, request.end_s) - request.start_s, 1e-300)
    eta = float(fibre_transmittance(reservation.positions_km[-1], attenuation_db_per_km))
    return FlowReport(
        source=path[0], destination=path[-1], hops=len(path) - 1, distance_km=reservation.positions_km[-1],
        memories_per_link=min(reservation.slots), pairs=n, rate_hz=n / active, fidelity_mean=mean,
        fidelity_ci95=ci, first_pair_s=deliveries[0].time_s if n else None,
        age_mean_s=float(np.mean([d.age_s for d in deliveries])) if n else math.nan,
        repeaterless_bound_hz=float(plob_bound(eta)) * mode_rate_hz, deliveries=tuple(deliveries))
