"""Key-relay routing (the routing function of ITU-T Y.3804's control layer): which chain of trusted
nodes carries a key between two key managers.

Pure logic on networkx: a :class:`Topology` (nodes and QKD links), what is known of each link now
(:class:`LinkState`: up or down, stored key, key rate, QBER), a :class:`RoutePolicy` (max hops,
excluded nodes, minimum key rate) and a cost callable give a route. The live key managers and the
simulator call the same :meth:`Router.route` (DESIGN.md: one brain, two bodies).

A link is usable if :func:`usable_link` says so (the one definition: up, at or above the policy's
minimum key rate, and free of alarms unless nothing else will do) and the cost callable gives it a
cost. A cost is any ``(LinkState) -> float | None``, smaller is better; ``None`` hides the link, as a
networkx ``weight`` callable that returns ``None`` hides an edge (e.g. a free-space link in fog):

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
from typing import TYPE_CHECKING, Any, Literal

from qnet.errors import NoRouteError

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Cost", "FeedModeName", "LinkState", "NoRouteError", "RelayRouting", "RoutePolicy", "Router", "Topology",
           "hop_cost", "key_level_cost", "usable_link"]


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


FeedModeName = Literal["photon", "sampled"]
"""How a link's key feed runs (the values of ``qnet.quantum.link.FeedMode``)."""


@dataclass(frozen=True)
class LinkState:
    """What the control layer knows of one link now."""

    up: bool = True
    stored_units: int = 10**9
    key_rate_bps: float = float("inf")
    qber: float = 0.0
    alarm: bool = False
    """The QBER alarm tripped or the pool ran below its threshold: route around it if possible."""
    lag_s: float | None = None
    """How far the link's key feed is behind real time (s), the larger end's; None: not reported."""
    feed_mode: FeedModeName | None = None
    """How the feed makes key: ``photon`` by photon, or ``sampled`` block statistics when it fell
    behind; None: not reported."""


@dataclass(frozen=True)
class RoutePolicy:
    """Y.3804 policy control: limits every route must keep."""

    max_hops: int | None = None
    excluded_nodes: frozenset[str] = field(default_factory=frozenset)
    min_key_rate_bps: float = 0.0


Cost = Callable[[LinkState], float | None]
"""A usable link's cost (>= 0, smaller is better); ``None`` hides the link from routes."""


def usable_link(state: LinkState, policy: RoutePolicy | None = None, *, alarmed_ok: bool = False) -> bool:
    """The one definition of a usable link, shared by routes, alternatives, admission and
    re-routing: up (not cut, failed or silent), at or above the policy's minimum key rate, and
    without an alarm unless ``alarmed_ok`` (alarmed links are a last resort).

    Examples:
        >>> usable_link(LinkState()), usable_link(LinkState(up=False))
        (True, False)
        >>> usable_link(LinkState(alarm=True)), usable_link(LinkState(alarm=True), alarmed_ok=True)
        (False, True)
        >>> usable_link(LinkState(key_rate_bps=10.0), RoutePolicy(min_key_rate_bps=100.0))
        False
    """
    floor = policy.min_key_rate_bps if policy is not None else 0.0
    return state.up and state.key_rate_bps >= floor and (alarmed_ok or not state.alarm)


def hop_cost(state: LinkState) -> float:
    """Shortest path in hops."""
    return 1.0


def key_level_cost(state: LinkState) -> float:
    """Prefer links with key in store."""
    return 1.0 + 1000.0 / (state.stored_units + 1)


class Router:
    """Routes over one topology under one policy.

    Args:
        topology: nodes and links.
        policy: route limits (max hops, excluded nodes, minimum key rate).
        cost: each usable link's cost; ``None`` hides it.
    """

    def __init__(self, topology: Topology, policy: RoutePolicy | None = None, cost: Cost = hop_cost) -> None:
        self.topology, self.policy, self.cost = topology, policy or RoutePolicy(), cost
        self._graphs: dict[tuple[Any, ...], nx.Graph] = {}
        self._alternatives: dict[tuple[Any, ...], list[list[str]]] = {}

    def route(self, src: str, dst: str, states: Mapping[str, LinkState] | None = None, *,
              avoid_nodes: Collection[str] = ()) -> list[str]:
        """The cheapest chain of nodes from ``src`` to ``dst`` (both included).

        Only usable links (:func:`usable_link`) the cost does not hide are used; links with an alarm
        only if nothing else reaches ``dst``. ``avoid_nodes`` are left out as relays (drained, or
        just failed).

        Raises:
            NoRouteError: naming why (unknown node, excluded, disconnected, too many hops).
        """
        import networkx as nx  # noqa: PLC0415 - deferred: a KME routes only once it relays (0.2 s of start-up)

        self._check_ends(src, dst)
        states = states or {}
        for allow_alarmed in (False, True):
            graph = self._graph(states, set(avoid_nodes) - {src, dst}, allow_alarmed)
            try:
                path: list[str] = nx.shortest_path(graph, src, dst, weight="cost")
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                continue
            return self._within_hops(path)
        raise NoRouteError(src, dst, "no usable route: every path crosses a link that is down, below the "
                           "policy's minimum key rate or hidden by the route cost, or a node that is excluded, "
                           "drained or failing")

    def usable(self, route: Sequence[str], states: Mapping[str, LinkState], *, avoid_nodes: Collection[str] = (),
               alarmed_ok: bool = False) -> bool:
        """Whether ``route`` may still carry relays: no relay excluded by policy or in ``avoid_nodes``,
        within the policy's hops, and every hop with a usable link the cost does not hide (an
        alarmed one only if ``alarmed_ok``)."""
        banned = (self.policy.excluded_nodes | set(avoid_nodes)) & set(route[1:-1])
        if banned or len(route) < 2 or (self.policy.max_hops is not None and len(route) - 1 > self.policy.max_hops):
            return False
        return all(any(self._weight(states.get(lid), alarmed_ok) is not None
                       for lid in self.topology.links_between(a, b)) for a, b in itertools.pairwise(route))

    def alternatives(self, src: str, dst: str, states: Mapping[str, LinkState] | None = None,
                     limit: int = 3, *, avoid_nodes: Collection[str] = ()) -> list[list[str]]:
        """Up to ``limit`` loop-free routes, cheapest first (for the operator's view, and admission
        when the cheapest route is full): routes free of alarmed links first, then routes that need
        one; ``avoid_nodes`` relay none of them. Kept while the network's state stays the same."""
        avoid = set(avoid_nodes) - {src, dst}
        key = (self._key(states or {}, avoid, False)[2], self._key(states or {}, avoid, True), src, dst, limit)
        if key not in self._alternatives:
            routes: list[list[str]] = []
            for allow_alarmed in (False, True):
                graph = self._graph(states or {}, avoid, allow_alarmed)
                routes += [r for r in self._k_shortest(graph, src, dst, limit) if r not in routes]
            self._alternatives[key] = routes[:limit]
            while len(self._alternatives) > 4096:
                self._alternatives.pop(next(iter(self._alternatives)))
        return [list(r) for r in self._alternatives[key]]

    def _check_ends(self, src: str, dst: str) -> None:
        for node in (src, dst):
            if node not in self.topology.nodes:
                raise NoRouteError(src, dst, f"unknown node {node!r}")
            if node in self.policy.excluded_nodes:
                raise NoRouteError(src, dst, f"node {node!r} is excluded by policy")

    def _k_shortest(self, graph: nx.Graph, src: str, dst: str, limit: int) -> list[list[str]]:
        import networkx as nx  # noqa: PLC0415 - deferred, as in route()

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
            raise NoRouteError(path[0], path[-1], f"the shortest usable route {' -> '.join(path)} has {hops} hops; "
                               f"the policy allows at most {self.policy.max_hops}")
        return list(path)

    def _weight(self, state: LinkState | None, allow_alarmed: bool) -> float | None:
        """A link's weight in the route graph: its cost if it is usable, else None (hidden).

        Raises:
            ValueError: if the cost callable gives a negative or NaN cost.
        """
        state = state or LinkState()
        if not usable_link(state, self.policy, alarmed_ok=allow_alarmed):
            return None
        cost = self.cost(state)
        if cost is not None and not cost >= 0:
            raise ValueError(f"a route cost must be >= 0 or None, got {cost!r} for {state}")
        return cost

    def _graph(self, states: Mapping[str, LinkState], avoid: set[str], allow_alarmed: bool) -> nx.Graph:
        """The usable links as a weighted graph; the last few are kept, keyed by what they depend on
        (each link's weight), since a network's state changes far less often than routes are asked for."""
        key = self._key(states, avoid, allow_alarmed)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._build(key[2], avoid)
            while len(self._graphs) > 16:
                self._graphs.pop(next(iter(self._graphs)))
        return graph

    def _key(self, states: Mapping[str, LinkState], avoid: set[str], allow_alarmed: bool) -> tuple[Any, ...]:
        return (frozenset(avoid), allow_alarmed,
                tuple(self._weight(states.get(lid), allow_alarmed) for _, _, lid in self.topology.links))

    def _build(self, weights: tuple[float | None, ...], avoid: set[str]) -> nx.Graph:
        import networkx as nx  # noqa: PLC0415 - deferred, as in route()

        graph = nx.Graph()
        graph.add_nodes_from(n for n in self.topology.nodes if n not in self.policy.excluded_nodes | avoid)
        for (a, b, link_id), cost in zip(self.topology.links, weights, strict=True):
            if cost is None or a not in graph or b not in graph:
                continue
            if not graph.has_edge(a, b) or graph[a][b]["cost"] > cost:
                graph.add_edge(a, b, cost=cost, link_id=link_id)
        return graph


class RelayRouting:
    """A key manager's relay routing (:class:`qnet.keys.relayer.RelayRoutes`): ``router`` over the
    controller's last picture of every link (``states``, empty without a controller) and what the key
    manager sees itself (``down``: links of silent peers, cut, held down)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.states: dict[str, LinkState] = {}

    def _with(self, down: Collection[str]) -> dict[str, LinkState]:
        return {**self.states, **{name: LinkState(up=False) for name in down}}

    def route(self, src: str, dst: str, *, down: Collection[str], avoid_nodes: Collection[str]) -> list[str]:
        """:meth:`Router.route` with ``down`` links down and ``avoid_nodes`` avoided."""
        return self.router.route(src, dst, self._with(down), avoid_nodes=avoid_nodes)

    def usable(self, route: Sequence[str], *, down: Collection[str]) -> bool:
        """:meth:`Router.usable` with ``down`` links down."""
        return self.router.usable(route, self._with(down))
