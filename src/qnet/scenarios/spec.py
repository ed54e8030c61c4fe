"""Network spec files: the typed, frozen description of a QKD network.

A spec is YAML with seven sections: ``name``, ``nodes``, ``links``, ``applications`` (the SAEs),
``demands``, ``policies`` and ``faults`` (what ``qnet simulate`` breaks, and when). The models
below check every field on load (pydantic); cross-references (node names, SAE IDs, connectivity)
and the links' protocol parameters are checked by :mod:`qnet.scenarios.validate`, which reports
every problem with its path, e.g.
``links[3].length_km: must be > 0``.

Example (a tiny network)::

    name: three-nodes
    nodes:
      - {name: A, kind: user_node, location: {lat: 35.71, lon: 139.49}}
      - {name: B, kind: trusted_node, location: {lat: 35.68, lon: 139.77}}
      - {name: C, kind: user_node, location: {lat: 35.71, lon: 139.76}}
    links:
      - {endpoints: [A, B], length_km: 45, attenuation_db_per_km: 0.2}
      - {endpoints: [B, C], protocol: cv-qkd}
    applications:
      - {sae_id: SAE_A, node: A}
      - {sae_id: SAE_C, node: C}
    demands:
      - {between: [SAE_A, SAE_C], key_rate_bps: 1000}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from qnet.security.names import name_problem
from qnet.units import parse_duration_s

__all__ = [
    "ApplicationSpec",
    "DemandSpec",
    "FaultAction",
    "FaultSpec",
    "LinkSpec",
    "Location",
    "Medium",
    "NetworkSpec",
    "NodeKind",
    "NodeSpec",
    "PolicySpec",
]

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")
]


def _identity(reserved: bool) -> AfterValidator:
    def check(name: str) -> str:
        if (problem := name_problem(name, reserved=reserved)) is not None:
            raise ValueError(problem)
        return name
    return AfterValidator(check)


Identity = Annotated[Name, _identity(True)]
"""A node name or SAE_ID: a certificate's CN, a file name, a URL segment (:mod:`qnet.security.names`)."""
LinkName = Annotated[Name, _identity(False)]
"""A link's name: a URL segment of the control API (safe characters; the role words allowed)."""
ParamValue = float | str | None


class _Spec(BaseModel):
    """Base of every spec model: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class NodeKind(StrEnum):
    """What a node is (ITU-T Y.3800 terms; satellites and ground stations from the white paper)."""

    TRUSTED_NODE = "trusted_node"
    USER_NODE = "user_node"
    SATELLITE = "satellite"
    GROUND_STATION = "ground_station"


class Medium(StrEnum):
    """What carries a link's photons."""

    FIBRE = "fibre"
    FREE_SPACE = "free_space"


class Location(_Spec):
    """Where a node is: latitude and longitude in degrees (WGS 84), altitude in km."""

    lat: float = Field(ge=-90.0, le=90.0, description="latitude, degrees north")
    lon: float = Field(ge=-180.0, le=180.0, description="longitude, degrees east")
    altitude_km: float = Field(default=0.0, ge=0.0, le=1e6, description="height above the ground, km")


class NodeSpec(_Spec):
    """A node: a site with a key manager (trusted node), an end user, a satellite or a ground station."""

    name: Identity
    kind: NodeKind = NodeKind.TRUSTED_NODE
    location: Location | None = None
    description: str = ""


class LinkSpec(_Spec):
    """A QKD link between two nodes.

    ``length_km`` may be left out when both endpoints have a location: it is then the great-circle
    distance (a lower bound on a real fibre route) or, when an endpoint is above the ground, the
    straight line of sight. ``params`` overrides the protocol's device parameters by name.
    """

    name: LinkName | None = None
    endpoints: list[Name] = Field(min_length=2, max_length=2)
    medium: Medium = Medium.FIBRE
    length_km: float | None = Field(default=None, gt=0.0, le=1e6)
    attenuation_db_per_km: float | None = Field(default=None, ge=0.0, le=1e3)
    extra_loss_db: float = Field(default=0.0, ge=0.0, le=1e4)
    protocol: str = "bb84-decoy"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    description: str = ""

    @property
    def label(self) -> str:
        """The link's name, or ``A-B`` from its endpoints."""
        return self.name or f"{self.endpoints[0]}-{self.endpoints[1]}"


class ApplicationSpec(_Spec):
    """A secure application entity (SAE, ETSI GS QKD 014) attached to a node's key manager."""

    sae_id: Identity
    node: Name
    peers: list[Name] | None = None
    """Access control: the SAEs this one may share keys with (left out: any)."""
    description: str = ""


class DemandSpec(_Spec):
    """A steady demand for key between two SAEs, in secret bits per second."""

    name: Name | None = None
    between: list[Name] = Field(min_length=2, max_length=2)
    key_rate_bps: float = Field(gt=0.0, le=1e15)
    priority: int = Field(default=0, ge=0)

    @property
    def label(self) -> str:
        """The demand's name, or ``A->B`` from its SAEs."""
        return self.name or f"{self.between[0]}->{self.between[1]}"


class PolicySpec(_Spec):
    """Network-wide policies for the control layer (Y.3804 policy control)."""

    max_hops: int | None = Field(default=None, ge=1)
    excluded_nodes: list[Name] = Field(default_factory=list)
    min_key_rate_bps: float = Field(default=0.0, ge=0.0)
    qber_alarm_threshold: float = Field(default=0.11, gt=0.0, le=0.5)
    key_lifetime_s: float | None = Field(default=None, gt=0.0)


class FaultAction(StrEnum):
    """What happens at a fault's time."""

    CUT = "cut"
    """A link stops carrying photons and is taken out of service (a fibre cut)."""
    RESTORE = "restore"
    """A cut link is back."""
    NODE_DOWN = "node_down"
    """A node's key manager stops: its links stop and nothing is relayed through it."""
    NODE_UP = "node_up"
    EAVESDROP = "eavesdrop"
    """An intercept-resend eavesdropper on a link: QBER about 25 %, no key, the QBER alarm trips."""
    EAVESDROP_END = "eavesdrop_end"


Duration = Annotated[str | float, Field(description="seconds, or text such as 90s, 15min, 2h, 1d")]


class FaultSpec(_Spec):
    """One event of the fault schedule (``qnet simulate``)."""

    at: Duration
    action: FaultAction
    link: Name | None = None
    node: Name | None = None
    until: Duration | None = None
    """When given, the opposite action follows at this time (e.g. a cut restored)."""

    def at_s(self) -> float:
        """The time in seconds from the start."""
        return _seconds(self.at)

    def until_s(self) -> float | None:
        """The end time in seconds, if any."""
        return None if self.until is None else _seconds(self.until)


def _seconds(value: str | float) -> float:
    return float(value) if isinstance(value, int | float) else parse_duration_s(value)


class NetworkSpec(_Spec):
    """A whole network. Build one with :func:`qnet.scenarios.validate.load_spec`, which also
    checks cross-references; constructing it directly checks fields only."""

    name: Name
    description: str = ""
    nodes: list[NodeSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)
    applications: list[ApplicationSpec] = Field(default_factory=list)
    demands: list[DemandSpec] = Field(default_factory=list)
    policies: PolicySpec = Field(default_factory=PolicySpec)
    faults: list[FaultSpec] = Field(default_factory=list)

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``.

        Raises:
            KeyError: if there is none.
        """
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def application(self, sae_id: str) -> ApplicationSpec:
        """The SAE with ID ``sae_id``.

        Raises:
            KeyError: if there is none.
        """
        for app in self.applications:
            if app.sae_id == sae_id:
                return app
        raise KeyError(sae_id)
