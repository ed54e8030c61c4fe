"""Inventory and state in the shapes of ETSI GS QKD 015 (the ``etsi-qkd-sdn-node`` YANG model, as
JSON): for each node a ``qkd_node`` with its ``qkd_interfaces`` (one per QKD link end), its
``qkd_links`` (``PHYS`` for a QKD link, ``VIRT`` for a key stream relayed through trusted nodes,
ETSI 015's virtual link) and its ``qkd_applications`` (the SAEs' sessions, with QoS and the key they
consumed).

Built from what the controller knows (:class:`qnet.control.controller.Controller`), or a KME
knows of its own links (any :class:`NetworkView`), and, for consumption, a per-session counter the
caller keeps; the node and link identifiers are stable
UUIDs derived from names (UUID v5), so the same network gives the same IDs every time.

Examples:
    >>> from qnet.control.controller import Controller
    >>> from qnet.control.routing import Topology
    >>> ctl = Controller(Topology(("A", "B"), (("A", "B", "A-B"),)), saes={"SA": "A", "SB": "B"})
    >>> node = qkd_node(ctl, "A", now_s=0.0)["qkd_node"]
    >>> node["qkdn_name"], node["qkd_links"]["qkd_link"][0]["qkdl_type"]
    ('A', 'etsi-qkd-node-types:PHYS')
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from qnet.control.controller import Session
from qnet.control.routing import LinkState, Topology

__all__ = ["NetworkView", "network_inventory", "qkd_node", "stable_id"]


class _LinkLike(Protocol):
    @property
    def ends(self) -> tuple[str, str]: ...
    @property
    def cut(self) -> bool: ...


class NetworkView(Protocol):
    """What the inventory reads: the controller has it all; a KME has its own links' part."""

    @property
    def topology(self) -> Topology: ...
    @property
    def links(self) -> Mapping[str, _LinkLike]: ...
    @property
    def sessions(self) -> Mapping[str, Session]: ...
    def states(self, now_s: float) -> Mapping[str, LinkState]: ...

_NS = uuid.UUID("6f1c1a4e-6b0b-5a56-9d4b-2f3c0a8e51d1")
_TYPES = "etsi-qkd-node-types:"


def stable_id(kind: str, name: str) -> str:
    """A UUID that names ``kind`` ``name`` the same way every time (UUID v5)."""
    return str(uuid.uuid5(_NS, f"{kind}/{name}"))


def qkd_node(ctl: NetworkView, node: str, *, now_s: float,
             consumed_bits: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One node's ``qkd_node`` container."""
    states = ctl.states(now_s)
    own = [(lid, link) for lid, link in ctl.links.items() if node in link.ends]
    interfaces = [{"qkdi_id": stable_id("interface", f"{node}/{lid}"), "qkdi_model": "qnet decoy-BB84 (simulated)",
                   "qkdi_type": f"{_TYPES}QKD_TYPE_DV", "qkdi_att_point": {"device": node, "port": lid},
                   "qkdi_status": f"{_TYPES}{'UP' if states[lid].up else 'DOWN'}"} for lid, _ in own]
    links = [_phys_link(ctl, node, lid, states[lid].up, link.cut, states[lid]) for lid, link in own]
    sessions = [s for s in ctl.sessions.values() if node in (s.route[0], s.route[-1])]
    links += [_virt_link(s) for s in sessions if len(s.route) > 2]
    apps = [_app(ctl, s, (consumed_bits or {}).get(s.key_stream_id, 0.0)) for s in sessions]
    return {"qkd_node": {
        "qkdn_id": stable_id("node", node), "qkdn_name": node, "qkdn_status": f"{_TYPES}UP",
        "qkdn_version": "qnet", "qkdn_location_id": node,
        "qkdn_capabilities": {"link_stats_support": True, "application_stats_support": True,
                              "key_relay_mode_enable": True},
        "qkd_interfaces": {"qkd_interface": interfaces},
        "qkd_links": {"qkd_link": links},
        "qkd_applications": {"qkd_app": apps},
    }}


def network_inventory(ctl: NetworkView, *, now_s: float,
                      consumed_bits: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Every node's ``qkd_node``: what the controller serves as the network's inventory."""
    return {"qkd_nodes": [qkd_node(ctl, n, now_s=now_s, consumed_bits=consumed_bits)["qkd_node"]
                          for n in ctl.topology.nodes]}


def _phys_link(ctl: NetworkView, node: str, lid: str, up: bool, cut: bool, state: Any) -> dict[str, Any]:
    a, b = ctl.links[lid].ends
    peer = b if node == a else a
    rate = state.key_rate_bps if math.isfinite(state.key_rate_bps) else None
    expected = sum(s.key_rate_bps for s in ctl.sessions.values()
                   if any({x, y} == {a, b} for x, y in zip(s.route, s.route[1:], strict=False)))
    status = "OFF" if cut else "ACTIVE" if up else "PASSIVE"
    return {"qkdl_id": stable_id("link", lid), "qkdl_name": lid, "qkdl_enable": not cut,
            "qkdl_status": f"{_TYPES}{status}", "qkdl_type": f"{_TYPES}PHYS",
            "qkdl_local": {"qkdn_id": stable_id("node", node), "qkdi_id": stable_id("interface", f"{node}/{lid}")},
            "qkdl_remote": {"qkdn_id": stable_id("node", peer), "qkdi_id": stable_id("interface", f"{peer}/{lid}")},
            "qkdl_applications": [s.key_stream_id for s in ctl.sessions.values() if lid in _links_of(ctl, s)],
            "qkdl_performance": {"skr": rate, "expected_consumption": expected,
                                 "eskr": None if rate is None else max(rate - expected, 0.0)},
            "qnet_state": {"stored_units": state.stored_units, "qber": state.qber, "alarm": state.alarm}}


def _virt_link(session: Session) -> dict[str, Any]:
    a, b = session.route[0], session.route[-1]
    return {"qkdl_id": stable_id("virtual", session.key_stream_id), "qkdl_enable": True,
            "qkdl_status": f"{_TYPES}ACTIVE", "qkdl_type": f"{_TYPES}VIRT",
            "qkdl_local": {"qkdn_id": stable_id("node", a)}, "qkdl_remote": {"qkdn_id": stable_id("node", b)},
            "virt_prev_hop": None, "virt_next_hop": session.route[1], "virt_bandwidth": session.key_rate_bps,
            "qkdl_applications": [session.key_stream_id], "qnet_route": list(session.route)}


def _app(ctl: NetworkView, session: Session, consumed: float) -> dict[str, Any]:
    relayed = len(session.route) > 2
    backing = ([stable_id("virtual", session.key_stream_id)] if relayed else
               [stable_id("link", lid) for lid in ctl.topology.links_between(session.route[0], session.route[1])])
    return {"app_id": session.key_stream_id, "app_status": f"{_TYPES}ON", "app_name": session.key_stream_id,
            "app_type": f"{_TYPES}CLIENT", "server_app_id": session.source, "client_app_id": [session.destination],
            "app_priority": session.priority,
            "app_qos": {"max_bandwidth": session.key_rate_bps, "min_bandwidth": session.key_rate_bps},
            "app_statistics": {"statistics": [{"start_time": session.opened_s, "consumed_bits": consumed}]},
            "backing_qkdl_id": backing}


def _links_of(ctl: NetworkView, session: Session) -> set[str]:
    return {lid for x, y in zip(session.route, session.route[1:], strict=False)
            for lid in ctl.topology.links_between(x, y)}
