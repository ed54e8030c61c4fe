"""The link planner: each link's rate is its protocol's physics at its length, and each demand's
capacity is a true maximum flow (checked against every cut)."""

from __future__ import annotations

import itertools
import math

import pytest

from qnet.control.capacity import max_key_rate_bps
from qnet.physics import great_circle_km, key_rate
from qnet.scenarios.planner import link_length_km, plan_network
from qnet.scenarios.validate import load_spec, parse_spec
from tests.conftest import EXAMPLES


def test_tokyo_links_follow_their_physics() -> None:
    """Every Tokyo link's rate equals key_rate() for its protocol, length and parameters."""
    spec = load_spec(EXAMPLES / "tokyo-qkd-network.yaml")
    plan = plan_network(spec)
    assert [lk.name for lk in plan.links] == ["nec", "toshiba", "ntt", "mitsubishi", "idq"]
    for link, lp in zip(spec.links, plan.links, strict=True):
        expected = key_rate(link.protocol, link.length_km or 0.0,
                            {**link.params, "attenuation_db_per_km": link.attenuation_db_per_km})
        assert lp.rate.rate_per_pulse == pytest.approx(expected.rate_per_pulse, rel=1e-9)
        assert lp.rate.loss_db == pytest.approx(link.length_km * link.attenuation_db_per_km)  # type: ignore[operator]


def test_tokyo_demand_capacity_is_the_parallel_links() -> None:
    """Koganei-Otemachi has three parallel links; the capacity is their sum (the min cut)."""
    plan = plan_network(load_spec(EXAMPLES / "tokyo-qkd-network.yaml"))
    direct = sum(lk.rate.rate_bps for lk in plan.links if set(lk.endpoints) == {"Koganei", "Otemachi"})
    tv = next(d for d in plan.demands if d.name == "tv-conference")
    assert tv.capacity_bps == pytest.approx(direct)
    assert tv.feasible


def test_length_from_locations_is_great_circle() -> None:
    """A link without length_km gets the great-circle distance between its endpoints."""
    spec = parse_spec("name: n\nnodes: [{name: A, location: {lat: 35.68, lon: 139.77}}, "
                      "{name: B, location: {lat: 34.69, lon: 135.50}}]\nlinks: [{endpoints: [A, B]}]\n")
    assert link_length_km(spec, spec.links[0]) == pytest.approx(great_circle_km(35.68, 139.77, 34.69, 135.50))


def test_satellite_link_uses_line_of_sight() -> None:
    """A ground-satellite link is as long as the line of sight (500 km at zenith)."""
    spec = parse_spec("name: n\nnodes: [{name: G, kind: ground_station, location: {lat: 0, lon: 0}}, "
                      "{name: S, kind: satellite, location: {lat: 0, lon: 0, altitude_km: 500}}]\n"
                      "links: [{endpoints: [G, S], medium: free_space, attenuation_db_per_km: 0}]\n")
    assert link_length_km(spec, spec.links[0]) == pytest.approx(500.0)


def _min_cut(links: list[tuple[str, str, float]], src: str, dst: str) -> float:
    """The smallest cut between src and dst by brute force over node subsets."""
    nodes = sorted({n for a, b, _ in links for n in (a, b)} - {src, dst})
    best = math.inf
    for r in range(len(nodes) + 1):
        for side in itertools.combinations(nodes, r):
            s = {src, *side}
            best = min(best, sum(c for a, b, c in links if (a in s) != (b in s)))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_max_flow_equals_min_cut(seed: int) -> None:
    """Max-flow min-cut: on random small networks the capacity equals the brute-force min cut."""
    import random

    rng = random.Random(seed)
    names = [f"n{i}" for i in range(6)]
    links = [(a, b, rng.choice([0.0, 1.0, 2.5, 7.0]))
             for a, b in itertools.combinations(names, 2) if rng.random() < 0.5]
    assert max_key_rate_bps(links, "n0", "n5") == pytest.approx(_min_cut(links, "n0", "n5"))


def test_excluded_nodes_cannot_relay() -> None:
    """Policy: an excluded node carries no relay traffic; an excluded endpoint gets nothing."""
    links = [("A", "B", 5.0), ("B", "C", 5.0), ("A", "D", 1.0), ("D", "C", 1.0)]
    assert max_key_rate_bps(links, "A", "C") == 6.0
    assert max_key_rate_bps(links, "A", "C", excluded=["B"]) == 1.0
    assert max_key_rate_bps(links, "A", "C", excluded=["A"]) == 0.0
    assert max_key_rate_bps(links, "A", "A") == math.inf
