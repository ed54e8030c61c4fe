"""The white paper's roadmap examples keep the properties they were drawn for: the Kanto network
(stage 1) is a mesh that survives any one link failure, the Sendai-Tokyo-Osaka backbone (stage 2)
has no span over 80 km and joins its cities through trusted nodes only, and every example's
demands fit what its links make."""

from __future__ import annotations

from functools import cache

import networkx as nx
import pytest

from qnet.control.capacity import max_key_rate_bps
from qnet.scenarios.planner import link_length_km, plan_network
from qnet.scenarios.spec import NetworkSpec, NodeKind, PolicySpec
from qnet.scenarios.validate import load_spec
from tests.conftest import EXAMPLES

MAX_SPAN_KM = 80.0
NETWORKS = ["tokyo-qkd-network", "kanto-qkd-network", "intercity-qkd-network"]


@cache
def spec_of(name: str) -> NetworkSpec:
    return load_spec(EXAMPLES / f"{name}.yaml")


def multigraph(spec: NetworkSpec, skip: int | None = None) -> nx.MultiGraph:
    """The spec's nodes and links (parallel links kept), without link number ``skip``."""
    graph = nx.MultiGraph()
    graph.add_nodes_from(n.name for n in spec.nodes)
    graph.add_edges_from(tuple(lk.endpoints) for i, lk in enumerate(spec.links) if i != skip)
    return graph


@pytest.mark.parametrize("name", NETWORKS)
def test_every_demand_fits(name: str) -> None:
    """The planner's capacity covers every demand of the example."""
    plan = plan_network(spec_of(name))
    assert plan.demands
    short = {d.name: (d.key_rate_bps, d.capacity_bps) for d in plan.demands if not d.feasible}
    assert not short, f"demands over capacity (wanted, capacity): {short}"


@pytest.mark.parametrize("name", ["kanto-qkd-network", "intercity-qkd-network"])
def test_every_link_at_most_80_km(name: str) -> None:
    """No fibre link is longer than 80 km, and each gives its length explicitly."""
    spec = spec_of(name)
    for link in spec.links:
        assert link.length_km is not None, f"{link.label}: length_km not set"
        assert 0 < link_length_km(spec, link) <= MAX_SPAN_KM, link.label


def test_kanto_extends_the_tokyo_qkd_network() -> None:
    """Stage 1 keeps the 2010 testbed's sites and grows it to a regional mesh of 8-12 nodes."""
    kanto, tokyo = spec_of("kanto-qkd-network"), spec_of("tokyo-qkd-network")
    names = {n.name for n in kanto.nodes}
    assert {n.name for n in tokyo.nodes} <= names
    assert 8 <= len(names) <= 12
    assert 4 <= len(kanto.demands) <= 6


def test_kanto_survives_any_single_link_failure() -> None:
    """Removing any one link leaves the Kanto network connected."""
    spec = spec_of("kanto-qkd-network")
    assert nx.is_connected(multigraph(spec))
    for i, link in enumerate(spec.links):
        assert nx.is_connected(multigraph(spec, skip=i)), f"cutting {link.label} splits the network"


def test_kanto_survives_any_single_node_failure() -> None:
    """Two node-disjoint paths join every pair of Kanto nodes (no node is a single point of failure)."""
    graph = nx.Graph(multigraph(spec_of("kanto-qkd-network")))
    assert nx.is_biconnected(graph)


def test_kanto_demands_fit_after_any_single_link_failure() -> None:
    """Each Kanto demand still fits, alone, whichever one link is cut."""
    spec = spec_of("kanto-qkd-network")
    plan = plan_network(spec)
    edges = [(lk.endpoints[0], lk.endpoints[1], lk.rate.rate_bps) for lk in plan.links]
    for i, cut in enumerate(plan.links):
        rest = edges[:i] + edges[i + 1:]
        for demand in plan.demands:
            capacity = max_key_rate_bps(rest, *demand.nodes)
            assert capacity >= demand.key_rate_bps, f"{demand.name} short after cutting {cut.name}"


def test_intercity_cities_joined_through_trusted_nodes_only() -> None:
    """Sendai, Tokyo, Nagoya and Osaka are connected in the subgraph of trusted nodes."""
    spec = spec_of("intercity-qkd-network")
    trusted = {n.name for n in spec.nodes if n.kind is NodeKind.TRUSTED_NODE}
    cities = {"Sendai", "Tokyo", "Nagoya", "Osaka"}
    assert cities <= trusted
    graph = multigraph(spec).subgraph(trusted)
    for city in cities - {"Tokyo"}:
        assert nx.has_path(graph, "Tokyo", city), city


def test_intercity_saes_sit_in_the_four_cities() -> None:
    """Each demand joins two of the SAE cities, and Sendai, Tokyo and Osaka all have demands."""
    spec = spec_of("intercity-qkd-network")
    cities = {"Sendai", "Tokyo", "Nagoya", "Osaka"}
    ends = [{spec.application(s).node for s in d.between} for d in spec.demands]
    assert all(pair <= cities and len(pair) == 2 for pair in ends)
    assert {"Sendai", "Tokyo", "Osaka"} <= set().union(*ends)


def test_intercity_sendai_osaka_avoids_tokyo() -> None:
    """With Tokyo (Otemachi) down, the bypass still carries the Sendai-Osaka demand."""
    spec = spec_of("intercity-qkd-network")
    assert nx.has_path(multigraph(spec).subgraph(set(multigraph(spec)) - {"Tokyo"}), "Sendai", "Osaka")
    policies = PolicySpec(**{**spec.policies.model_dump(), "excluded_nodes": ["Tokyo"]})
    plan = plan_network(spec.model_copy(update={"policies": policies}))
    demand = next(d for d in plan.demands if d.nodes == ("Sendai", "Osaka"))
    assert demand.feasible


def test_intercity_second_systems_match_their_spans() -> None:
    """Each "-2" link is a second system on the same span: same endpoints and fibre as its twin."""
    spec = spec_of("intercity-qkd-network")
    by_name = {lk.label: lk for lk in spec.links}
    seconds = [lk for lk in spec.links if lk.label.endswith("-2")]
    assert seconds
    for link in seconds:
        twin = by_name[link.label.removesuffix("-2")]
        assert twin.endpoints == link.endpoints
        assert twin.length_km == link.length_km
        assert twin.attenuation_db_per_km == link.attenuation_db_per_km


def test_intercity_route_is_long_haul() -> None:
    """Sendai to Osaka is over 500 km of fibre on the shortest route: no single link could do it."""
    spec = spec_of("intercity-qkd-network")
    graph = nx.Graph()
    for link in spec.links:
        graph.add_edge(*link.endpoints, km=link_length_km(spec, link))
    assert nx.shortest_path_length(graph, "Sendai", "Osaka", weight="km") > 500
    assert spec.policies.max_hops is not None
    assert nx.shortest_path_length(graph, "Sendai", "Osaka") <= spec.policies.max_hops
