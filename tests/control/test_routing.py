"""The relay router: shortest paths, policy limits with errors that say why, failures routed around."""

from __future__ import annotations

import pytest

from qnet.control.routing import LinkState, RoutePolicy, Router, Topology, key_level_cost
from qnet.errors import NoRouteError

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


def test_a_cost_that_returns_none_hides_the_link() -> None:
    """A cost callable may hide a link (networkx's ``weight`` returning None): routes, alternatives
    and ``usable`` all leave it out, and no route at all is an error that says so."""
    fogged = {"L0": LinkState(qber=0.5)}  # the cost callable below reads this as "fog"

    def weather_cost(state: LinkState) -> float | None:
        return None if state.qber > 0.2 else 1.0

    router = Router(RING, cost=weather_cost)
    assert router.route("R0", "R1", fogged) == ["R0", "R5", "R4", "R3", "R2", "R1"]
    assert all(r[:2] != ["R0", "R1"] for r in router.alternatives("R0", "R1", fogged, limit=3))
    assert not router.usable(["R0", "R1"], fogged) and router.usable(["R0", "R1"], {})
    cut_off = {"L0": LinkState(qber=0.5), "L5": LinkState(qber=0.5)}
    with pytest.raises(NoRouteError, match="hidden by the route cost"):
        router.route("R0", "R2", cut_off)
    with pytest.raises(ValueError, match="must be >= 0 or None"):
        Router(RING, cost=lambda s: -1.0).route("R0", "R2")


def test_usable_is_one_definition_for_links_and_routes() -> None:
    """A route is usable only if no relay is avoided or excluded and every hop has a link that is
    up, at the policy's minimum rate and (unless allowed) free of alarms."""
    router = Router(RING, RoutePolicy(min_key_rate_bps=100.0, excluded_nodes=frozenset({"R4"})))
    route = ["R0", "R1", "R2"]
    assert router.usable(route, {})
    assert not router.usable(route, {}, avoid_nodes={"R1"})  # a drained relay
    assert router.usable(route, {}, avoid_nodes={"R0", "R2"})  # its own ends may be drained: they are no relay
    assert not router.usable(route, {"L1": LinkState(up=False)})  # cut
    assert not router.usable(route, {"L1": LinkState(key_rate_bps=10.0)})  # below the policy's minimum
    assert not router.usable(route, {"L1": LinkState(alarm=True)})
    assert router.usable(route, {"L1": LinkState(alarm=True)}, alarmed_ok=True)
    assert not router.usable(["R3", "R4", "R5"], {})  # excluded relay
    assert not Router(RING, RoutePolicy(max_hops=1)).usable(route, {})


def test_alternatives_avoid_drained_nodes_and_come_alarm_free_first() -> None:
    """Alternatives relay through no avoided node, and a route needing an alarmed link comes after
    every route that does not."""
    router = Router(RING)
    assert router.alternatives("R0", "R2", limit=3) == [["R0", "R1", "R2"], ["R0", "R5", "R4", "R3", "R2"]]
    assert router.alternatives("R0", "R2", limit=3, avoid_nodes={"R1"}) == [["R0", "R5", "R4", "R3", "R2"]]
    alarmed = {"L1": LinkState(alarm=True)}
    assert router.alternatives("R0", "R2", alarmed, limit=3) == [["R0", "R5", "R4", "R3", "R2"], ["R0", "R1", "R2"]]
