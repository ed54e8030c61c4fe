"""Key-relay routing (the routing function of ITU-T Y.3804's control layer): which chain of trusted
nodes carries a key between two key managers.

Pure logic on networkx: a :class:`Topology` (nodes and QKD links), what is known of each link now
(:class:`LinkState`: up or down, stored key, key rate, QBER), a :class:`RoutePolicy` (max hops,
excluded nodes, minimum key rate) and a cost callable give a route. The live key managers and the
simulator call the same :meth:`Router.route` (DESIGN.md: one brain, two bodies).

Costs (any ``(LinkState) -> float``, smaller is better):

- :func:`hop_cost`: every usable link costs 1, so the route is a shortest path in hops (the baseline);
- :func:`key_level_cost`: 1 + 1000 / (stored units + 1), so that a route through a link whose pool runs
  low costs more and traffic spreads over links with key to spare, as the Tokyo QKD Network's key
  management server did (Sasaki et al., Opt. Express 19, 10387 (2011), sec. 4).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

from qnet.errors import QNetError

__all__ = ["LinkState", "NoRouteError", "RoutePolicy", "Router", "Topology", "hop_cost", "key_level_cost"]


class NoRouteError(QNetError):
    """No route satisfies the policy; the message says which rule or failure rules it out."""


@dataclass(frozen=True)
class Topology:
    """Nodes and QKD links ``(node_a, node_b, link_id)``; parallel links between two nodes are allowed."""

    nodes: tuple[str, ...]
    links: tuple[tuple[str, str, str], ...]

    def links_between(self, a: str, b: str) -> list[str]:
        """The link_ids joining ``a`` and ``b``."""
        return list(self._between.get(frozenset((a, b)), ()))

    @cached_property
    def _between(self) -> dict[frozenset[str], tuple[str, ...]]:
        index: dict[frozenset[str], tuple[str, ...]] = {}
        for x, y, lid in self.links:
            index[frozenset((x, y))] = (*index.get(frozenset((x, y)), ()), lid)
        return index


@dataclass(frozen=True)
class LinkState:
    """What the control layer knows of one link now."""

    up: bool = True
    stored_units: int = 10**9
    key_rate_bps: float = float("inf")
    qber: float = 0.0
    alarm: bool = False
    """The QBER alarm tripped or the pool ran below its threshold: route around it if possible."""


@dataclass(frozen=True)
class RoutePolicy:
    """Y.3804 policy control: limits every route must keep."""

    max_hops: int | None = None
    excluded_nodes: frozenset[str] = field(default_factory=frozenset)
    min_key_rate_bps: float = 0.0


Cost = Callable[[LinkState], float]


def hop_cost(state: LinkState) -> float:
    """Shortest path in hops."""
    return 1.0


def key_level_cost(state: LinkState) -> float:
    """Prefer links with key in store."""
    return 1.0 + 1000.0 / (state.stored_units + 1)


class Router:
    """Routes over one topology under one policy."""

    def __init__(self, topology: Topology, policy: RoutePolicy | None = None, cost: Cost = hop_cost) -> None:
        self.topology, self.policy, self.cost = topology, policy or RoutePolicy(), cost
        self._graphs: dict[tuple[Any, ...], nx.Graph] = {}
        self._alternatives: dict[tuple[Any, ...], list[list[str]]] = {}

    def route(self, src: str, dst: str, states: Mapping[str, LinkState] | None = None, *,
              avoid_nodes: Collection[str] = ()) -> list[str]:
        """The cheapest chain of nodes from ``src`` to ``dst`` (both included).

        Links that are down or below the policy's key rate are not used; links with an alarm only if
        nothing else reaches ``dst``. ``avoid_nodes`` are left out as relays (e.g. just failed).

        Raises:
            NoRouteError: naming why (unknown node, excluded, disconnected, too many hops).
        """
        for node in (src, dst):
            if node not in self.topology.nodes:
                raise NoRouteError(f"unknown node {node!r}")
            if node in self.policy.excluded_nodes:
                raise NoRouteError(f"node {node!r} is excluded by policy")
        states = states or {}
        for allow_alarmed in (False, True):
            graph = self._graph(states, set(avoid_nodes) - {src, dst}, allow_alarmed)
            try:
                path: list[str] = nx.shortest_path(graph, src, dst, weight="cost")
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                continue
            return self._within_hops(path)
        raise NoRouteError(f"no usable route from {src} to {dst}: every path crosses a link that is down, "
                      "below the policy's minimum key rate, or a node that is excluded or failing")

    def usable(self, route: Sequence[str], states: Mapping[str, LinkState]) -> bool:
        """Whether every hop of ``route`` still has a link that is up and not alarmed."""
        def ok(link_id: str) -> bool:
            state = states.get(link_id, LinkState())
            return state.up and not state.alarm

        return all(any(ok(lid) for lid in self.topology.links_between(a, b)) for a, b in itertools.pairwise(route))

    def alternatives(self, src: str, dst: str, states: Mapping[str, LinkState] | None = None,
                     limit: int = 3) -> list[list[str]]:
        """Up to ``limit`` loop-free routes, cheapest first (for the operator's view, and admission
        when the cheapest route is full); kept while the network's state stays the same."""
        key = (self._key(states or {}, set(), True), src, dst, limit)
        if key not in self._alternatives:
            self._alternatives[key] = self._k_shortest(self._graph(states or {}, set(), True), src, dst, limit)
            while len(self._alternatives) > 4096:
                self._alternatives.pop(next(iter(self._alternatives)))
        return [list(r) for r in self._alternatives[key]]

    def _k_shortest(self, graph: nx.Graph, src: str, dst: str, limit: int) -> list[list[str]]:
        routes: list[list[str]] = []
        try:
            for path in nx.shortest_simple_paths(graph, src, dst, weight="cost"):
                if self.policy.max_hops is not None and len(path) - 1 > self.policy.max_hops:
                    break
                routes.append(path)
                if len(routes) == limit:
                    break
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            pass
        return routes

    def _within_hops(self, path: Sequence[str]) -> list[str]:
        hops = len(path) - 1
        if self.policy.max_hops is not None and hops > self.policy.max_hops:
            raise NoRouteError(f"the shortest usable route {' -> '.join(path)} has {hops} hops; "
                          f"the policy allows at most {self.policy.max_hops}")
        return list(path)

    def _graph(self, states: Mapping[str, LinkState], avoid: set[str], allow_alarmed: bool) -> nx.Graph:
        """The usable links as a weighted graph; the last few are kept, keyed by what they depend on
        (each link's usability and cost), since a network's state changes far less often than
        routes are asked for."""
        key = self._key(states, avoid, allow_alarmed)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._build(states, avoid, allow_alarmed)
            while len(self._graphs) > 16:
                self._graphs.pop(next(iter(self._graphs)))
        return graph

    def _key(self, states: Mapping[str, LinkState], avoid: set[str], allow_alarmed: bool) -> tuple[Any, ...]:
        return (frozenset(avoid), allow_alarmed,
                tuple(self._edge_key(states.get(lid), allow_alarmed) for _, _, lid in self.topology.links))

    def _edge_key(self, state: LinkState | None, allow_alarmed: bool) -> float | None:
        state = state or LinkState()
        if not state.up or state.key_rate_bps < self.policy.min_key_rate_bps or (state.alarm and not allow_alarmed):
            return None
        return self.cost(state)

    def _build(self, states: Mapping[str, LinkState], avoid: set[str], allow_alarmed: bool) -> nx.Graph:
        graph = nx.Graph()
        graph.add_nodes_from(n for n in self.topology.nodes if n not in self.policy.excluded_nodes | avoid)
        for a, b, link_id in self.topology.links:
            state = states.get(link_id, LinkState())
            if not state.up or state.key_rate_bps < self.policy.min_key_rate_bps or (state.alarm and not allow_alarmed):
                continue
            if a not in graph or b not in graph:
                continue
            cost = self.cost(state)
            if not graph.has_edge(a, b) or graph[a][b]["cost"] > cost:
                graph.add_edge(a, b, cost=cost, link_id=link_id)
        return graph
