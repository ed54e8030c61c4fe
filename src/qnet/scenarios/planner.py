"""The link planner: the key rate of every link of a network spec, and whether its demands fit.

For each link the planner finds its length (given, great-circle, or line of sight), its loss, and its
secret-key rate from the physics model of its protocol. For each demand it finds the largest key rate
the network could relay between the two SAEs' nodes if that demand were alone: the maximum flow
over link key rates (trusted-node relay can split a demand over several paths; ITU-T Y.3803),
skipping the policy's excluded nodes.

Examples:
    >>> from qnet.scenarios.validate import parse_spec
    >>> spec = parse_spec('''
    ... name: two
    ... nodes: [{name: A}, {name: B}]
    ... links: [{endpoints: [A, B], length_km: 50}]
    ... ''')
    >>> plan = plan_network(spec)
    >>> round(plan.links[0].rate.rate_per_pulse, 7)
    0.0002226
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qnet.control.capacity import max_key_rate_bps
from qnet.physics.channels import channel_loss_db
from qnet.physics.geometry import great_circle_km, slant_range_km
from qnet.physics.keyrate import KeyRatePoint, get_protocol, key_rate_at_transmittance
from qnet.scenarios.spec import LinkSpec, NetworkSpec, NodeSpec
from qnet.scenarios.validate import link_protocol_params
from qnet.units import db_to_transmittance

__all__ = ["DemandPlan", "LinkPlan", "NetworkPlan", "link_length_km", "node_positions", "plan_network"]


@dataclass(frozen=True)
class LinkPlan:
    """A link with the key rate its physics gives."""

    name: str
    endpoints: tuple[str, str]
    medium: str
    rate: KeyRatePoint

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"link": self.name, "endpoints": list(self.endpoints), "medium": self.medium,
                **self.rate.as_dict()}


@dataclass(frozen=True)
class DemandPlan:
    """A demand and the largest key rate the network could relay for it alone."""

    name: str
    saes: tuple[str, str]
    nodes: tuple[str, str]
    key_rate_bps: float
    capacity_bps: float

    @property
    def feasible(self) -> bool:
        """Whether the capacity covers the demand."""
        return self.capacity_bps >= self.key_rate_bps

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"demand": self.name, "saes": list(self.saes), "nodes": list(self.nodes),
                "key_rate_bps": self.key_rate_bps, "capacity_bps": self.capacity_bps,
                "feasible": self.feasible}


@dataclass(frozen=True)
class NetworkPlan:
    """The plan of a whole network."""

    name: str
    links: tuple[LinkPlan, ...]
    demands: tuple[DemandPlan, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"network": self.name, "links": [lk.as_dict() for lk in self.links],
                "demands": [d.as_dict() for d in self.demands]}


def link_length_km(spec: NetworkSpec, link: LinkSpec) -> float:
    """The link's length: as given, else great-circle on the ground or line of sight above it.

    Raises:
        ValueError: if the length is not given and an endpoint has no location.
    """
    if link.length_km is not None:
        return link.length_km
    a, b = (spec.node(e) for e in link.endpoints)
    if a.location is None or b.location is None:
        raise ValueError(f"link {link.label!r}: length_km is needed, an endpoint has no location")
    la, lb = a.location, b.location
    if la.altitude_km == 0.0 and lb.altitude_km == 0.0:
        return great_circle_km(la.lat, la.lon, lb.lat, lb.lon)
    return slant_range_km(la.lat, la.lon, la.altitude_km, lb.lat, lb.lon, lb.altitude_km)


def plan_link(spec: NetworkSpec, link: LinkSpec) -> LinkPlan:
    """The key rate of one link of a checked spec."""
    params = link_protocol_params(link)
    length = link_length_km(spec, link)
    loss = float(channel_loss_db(length, params.attenuation_db_per_km, params.extra_loss_db))
    rate = key_rate_at_transmittance(
        get_protocol(link.protocol), params, float(db_to_transmittance(loss)),
        distance_km=length, loss_db=loss,
    )
    return LinkPlan(link.label, (link.endpoints[0], link.endpoints[1]), link.medium.value, rate)


def plan_network(spec: NetworkSpec, *, progress: Callable[[str], None] | None = None) -> NetworkPlan:
    """Key rates of every link and the relay capacity of every demand of a checked spec.

    Args:
        spec: a spec that passed :func:`~qnet.scenarios.validate.load_spec`.
        progress: called with each link's name once it is planned (for progress bars).
    """
    links = []
    for link in spec.links:
        links.append(plan_link(spec, link))
        if progress:
            progress(link.label)
    edges = [(lk.endpoints[0], lk.endpoints[1], lk.rate.rate_bps) for lk in links]
    demands = tuple(_plan_demand(spec, d.label, tuple(d.between), d.key_rate_bps, edges)
                    for d in spec.demands)
    return NetworkPlan(spec.name, tuple(links), demands)


def _plan_demand(
    spec: NetworkSpec, name: str, saes: tuple[str, ...], rate_bps: float,
    edges: list[tuple[str, str, float]],
) -> DemandPlan:
    nodes = tuple(spec.application(s).node for s in saes)
    capacity = max_key_rate_bps(edges, nodes[0], nodes[1], excluded=spec.policies.excluded_nodes)
    return DemandPlan(name, (saes[0], saes[1]), (nodes[0], nodes[1]), rate_bps, capacity)


def node_positions(nodes: list[NodeSpec]) -> dict[str, tuple[float, float]]:
    """(lon, lat) of every node that has a location."""
    return {n.name: (n.location.lon, n.location.lat) for n in nodes if n.location is not None}
