"""The relay router: shortest paths, policy limits with errors that say why, failures routed around."""

from __future__ import annotations

import pytest

from qnet.control.routing import LinkState, NoRouteError, RoutePolicy, Router, Topology, key_level_cost

RING = Topology(tuple(f"R{i}" for i in range(6)), tuple((f"R{i}", f"R{(i + 1) % 6}", f"L{i}") for i in range(6)))


def test_shortest_route_and_detour_around_a_down_link() -> None:
    router = Router(RING)
    assert router.route("R0", "R2") == ["R0", "R1", "R2"]
    assert router.route("R0", "R2", {"L0": LinkState(up=False)}) == ["R0", "R5", "R4", "R3", "R2"]
    assert router.route("R0", "R2", avoid_nodes={"R1"}) == ["R0", "R5", "R4", "R3", "R2"]


def test_policy_max_hops_and_excluded_nodes_refuse_with_the_reason() -> None:
    router = Router(RING, RoutePolicy(max_hops=3))
    with pytest.raises(NoRouteError, match="has 4 hops; the policy allows at most 3"):
        router.route("R0", "R2", {"L0": LinkState(up=False)})
    with pytest.raises(NoRouteError, match="excluded by policy"):
        Router(RING, RoutePolicy(excluded_nodes=frozenset({"R2"}))).route("R0", "R2")
    with pytest.raises(NoRouteError, match="no usable route"):
        Router(RING, RoutePolicy(excluded_nodes=frozenset({"R1", "R5"}))).route("R0", "R3")


def test_alarmed_links_are_a_last_resort_and_key_level_steers() -> None:
    assert Router(RING).route("R0", "R2", {"L0": LinkState(alarm=True)}) == ["R0", "R5", "R4", "R3", "R2"]
    both = {"L0": LinkState(alarm=True), "L5": LinkState(alarm=True)}
    assert Router(RING).route("R0", "R2", both) == ["R0", "R1", "R2"]  # nothing else reaches it
    low = {"L2": LinkState(stored_units=0)}  # R2-R3 nearly empty: R0 -> R3 goes the other way
    assert Router(RING, cost=key_level_cost).route("R0", "R3", low) == ["R0", "R5", "R4", "R3"]


def test_parallel_links_and_min_key_rate() -> None:
    topo = Topology(("A", "B"), (("A", "B", "slow"), ("A", "B", "fast")))
    assert topo.links_between("B", "A") == ["slow", "fast"]
    states = {"slow": LinkState(key_rate_bps=10), "fast": LinkState(key_rate_bps=1e4)}
    assert Router(topo, RoutePolicy(min_key_rate_bps=100)).route("A", "B", states) == ["A", "B"]
    with pytest.raises(NoRouteError):
        Router(topo, RoutePolicy(min_key_rate_bps=1e5)).route("A", "B", states)
