"""Networks of quantum routers, requests between them, routes and the reservation of memories.

A network is a networkx graph: each node a router with its :class:`MemoryModel` (``memory``), each edge an
elementary link with its :class:`LinkModel` (``link``). A :class:`Request` asks for entangled pairs
between two routers for a while; :func:`reserve` routes it (fewest-loss path, networkx's Dijkstra with
the links' fibre length as weight) and reserves memories on every router along the path, as the
network layer's resource reservation does (Pompili et al., npj Quantum Inf. 8, 121 (2022) describe the
same split of a link layer and a network layer; Van Meter, *Quantum Networking*, ch. 11). A router's
memories are shared by every request through it; a request gets what is left, or is refused.

The swapping order along a path is a plan: for each interior router, the two ends of the pairs it joins.
``nested`` halves the path recursively (the doubling of Briegel, Dür, Cirac, Zoller, PRL 81, 5932
(1998)); ``sequential`` joins from the source outward.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np

from qnet.quantum.entanglement.components import LinkModel, MemoryModel

__all__ = ["ORDERS", "Request", "Reservation", "chain", "grid", "random_network", "reserve", "swap_plan"]

ORDERS = ("nested", "sequential")


@dataclass(frozen=True)
class Request:
    """Pairs wanted between ``source`` and ``destination`` from ``start_s`` to ``end_s``, using up to
    ``memories`` qubits per link end on each router of the path."""

    source: str
    destination: str
    start_s: float = 0.0
    end_s: float = math.inf
    memories: int = 5

    def __post_init__(self) -> None:
        if self.source == self.destination:
            raise ValueError(f"a request needs two different routers, got {self.source!r} twice")
        if self.memories < 1:
            raise ValueError(f"a request needs >= 1 memory per link end, got {self.memories!r}")
        if not self.end_s > self.start_s >= 0:
            raise ValueError(f"a request needs 0 <= start_s < end_s, got {self.start_s!r}, {self.end_s!r}")


@dataclass(frozen=True)
class Reservation:
    """A routed request: its path and the memories reserved per link end (``slots[i]`` on link i)."""

    request: Request
    path: tuple[str, ...]
    slots: tuple[int, ...]
    positions_km: tuple[float, ...]

    def distance_km(self, i: int, j: int) -> float:
        """Fibre distance along the path between positions i and j."""
        return abs(self.positions_km[j] - self.positions_km[i])


def chain(nodes: int, *, link: LinkModel, memory: MemoryModel, prefix: str = "r") -> nx.Graph:
    """A linear chain of ``nodes`` routers ``r0 ... r{n-1}``."""
    if nodes < 2:
        raise ValueError(f"a chain needs >= 2 routers, got {nodes!r}")
    graph = nx.path_graph([f"{prefix}{i}" for i in range(nodes)])
    nx.set_node_attributes(graph, memory, "memory")
    nx.set_edge_attributes(graph, link, "link")
    return graph


def grid(rows: int, cols: int, *, link: LinkModel, memory: MemoryModel) -> nx.Graph:
    """A ``rows`` x ``cols`` grid of routers named ``r{row}-{col}``."""
    base = nx.grid_2d_graph(rows, cols)
    graph = nx.relabel_nodes(base, {(r, c): f"r{r}-{c}" for r, c in base.nodes})
    nx.set_node_attributes(graph, memory, "memory")
    nx.set_edge_attributes(graph, link, "link")
    return graph


def random_network(nodes: int, *, degree: float = 3.0, link: LinkModel, memory: MemoryModel,
                   seed: int = 0) -> nx.Graph:
    """A connected random geometric-like network (Waxman-free: a random spanning tree plus random edges
    up to mean ``degree``), every link of the same model."""
    rng = np.random.default_rng(seed)
    graph = nx.random_labeled_tree(nodes, seed=int(rng.integers(2**31)))
    extra = max(int(nodes * degree / 2) - (nodes - 1), 0)
    while extra > 0:
        a, b = (int(x) for x in rng.integers(nodes, size=2))
        if a != b and not graph.has_edge(a, b):
            graph.add_edge(a, b)
            extra -= 1
    graph = nx.relabel_nodes(graph, {i: f"r{i}" for i in graph.nodes})
    nx.set_node_attributes(graph, memory, "memory")
    nx.set_edge_attributes(graph, link, "link")
    return graph


def swap_plan(links: int, order: str) -> dict[int, tuple[int, int]]:
    """For each interior position of a path of ``links`` links, the span (a, b) whose halves it joins.

    Examples:
        >>> swap_plan(4, "nested")
        {2: (0, 4), 1: (0, 2), 3: (2, 4)}
        >>> swap_plan(3, "sequential")
        {2: (0, 3), 1: (0, 2)}
    """
    if order not in ORDERS:
        raise ValueError(f"swapping order must be one of {', '.join(ORDERS)}, got {order!r}")
    plan: dict[int, tuple[int, int]] = {}
    if order == "sequential":
        for r in range(links - 1, 0, -1):
            plan[r] = (0, r + 1)
        return plan

    def split(a: int, b: int) -> None:
        if b - a < 2:
            return
        mid = (a + b) // 2
        plan[mid] = (a, b)
        split(a, mid)
        split(mid, b)

    split(0, links)
    return plan


def _weight(left: dict[str, int], destination: str) -> Callable[[str, str, dict[str, object]], float | None]:
    """Fibre length as the cost, with routers that have no two free memories hidden (networkx's
    Dijkstra skips an edge whose weight is None), so a request routes around full routers."""
    def weight(u: str, v: str, data: dict[str, object]) -> float | None:
        if left[v] < (1 if v == destination else 2):
            return None
        link = data["link"]
        assert isinstance(link, LinkModel)
        return link.length_km + 1e-9
    return weight


def reserve(graph: nx.Graph, requests: Iterable[Request]) -> tuple[list[Reservation], list[tuple[Request, str]]]:
    """Route each request and reserve its memories, first come first served: (reservations, refusals
    with their reason). A router gives each link end of a request ``min(memories, left // ends)``
    qubits (an interior router has two ends on the path); a request that would get none is refused."""
    left = {node: data["memory"].count for node, data in graph.nodes(data=True)}
    done: list[Reservation] = []
    refused: list[tuple[Request, str]] = []
    for request in requests:
        for end in (request.source, request.destination):
            if end not in graph:
                raise ValueError(f"request names router {end!r}, which is not in the network")
        try:
            path = tuple(nx.dijkstra_path(graph, request.source, request.destination,
                                          weight=_weight(left, request.destination)))
        except nx.NetworkXNoPath:
            refused.append((request, f"no path from {request.source} to {request.destination} through "
                                     "routers with free memories"))
            continue
        per_end = [left[n] // (1 if i in (0, len(path) - 1) else 2) for i, n in enumerate(path)]
        slots = tuple(min(request.memories, per_end[i], per_end[i + 1]) for i in range(len(path) - 1))
        if min(slots) < 1:
            busy = next(path[i] for i in range(len(path)) if per_end[i] < 1)
            refused.append((request, f"router {busy} has no free memory"))
            continue
        for i, node in enumerate(path):
            left[node] -= (slots[i - 1] if i > 0 else 0) + (slots[i] if i < len(slots) else 0)
        positions = [0.0]
        for a, b in itertools.pairwise(path):
            positions.append(positions[-1] + graph.edges[a, b]["link"].length_km)
        done.append(Reservation(request, path, slots, tuple(positions)))
    return done, refused
