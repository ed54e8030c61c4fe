"""Relay capacity: the largest key rate the links of a network can carry between two nodes.

With trusted-node relay (ITU-T Y.3803) a key between two nodes can be split over several paths, so
the key rate available to a single demand is the maximum flow between its nodes with each link's
secret-key rate as capacity (Ford-Fulkerson max-flow min-cut theorem), computed by networkx.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import networkx as nx

__all__ = ["max_key_rate_bps"]


def max_key_rate_bps(
    links: Iterable[tuple[str, str, float]],
    src: str,
    dst: str,
    *,
    excluded: Iterable[str] = (),
) -> float:
    """Maximum key rate (bit/s) that can be relayed from ``src`` to ``dst``.

    Args:
        links: ``(node_a, node_b, key_rate_bps)`` per link; parallel links add up.
        src: the node where the key starts.
        dst: the node where the key ends.
        excluded: nodes that may not relay (policy); an excluded endpoint gets 0.

    Returns:
        The max-flow value; ``inf`` when ``src == dst``; 0 when they are not connected.

    Examples:
        >>> max_key_rate_bps([("A", "B", 5.0), ("B", "C", 3.0), ("A", "C", 1.0)], "A", "C")
        4.0
    """
    if src == dst:
        return math.inf
    banned = set(excluded)
    if src in banned or dst in banned:
        return 0.0
    graph = nx.DiGraph()
    graph.add_nodes_from((src, dst))
    for a, b, rate in links:
        if a in banned or b in banned or a == b:
            continue
        for u, v in ((a, b), (b, a)):
            cap = graph.edges[u, v]["capacity"] if graph.has_edge(u, v) else 0.0
            graph.add_edge(u, v, capacity=cap + float(rate))
    return float(nx.maximum_flow_value(graph, src, dst))
