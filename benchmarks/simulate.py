"""Benchmark: ``qnet simulate`` on large networks, and how its cost grows with size.

Goal (issue 5): 24 h of a 50-node, 80-link network with 100 demands in <= 60 s; and the cost at
50, 200 and 1000 nodes. Each network is a random geometric graph on a 400 km square (seeded):
nodes join their nearest neighbours with fibre links of 10-80 km (integer lengths, 0.2 dB/km) until
there are 1.6 links per node and the graph is connected; 100 demands join random SAE pairs at 1-5
kbit/s. The fault schedule cuts one link for two hours and puts an eavesdropper on another for an
hour, so the controller re-routes.

The link physics (finite-key rate of each link's live block length) is planned once per length and
reported apart ("plan"); "simulate" is the 24 h run with the controller in the loop (1 s period).

Anchor: none runs side by side. SeQUeNCe and NetSquid simulate photons and memories, not key pools
and relay over a day; the figure is held against the goal (ratio = goal / time).

Run: python benchmarks/simulate.py [--sizes 50,200,1000] [--hours 24]
"""

from __future__ import annotations

import argparse
import math
import time

import networkx as nx
import numpy as np
from _common import emit, machine

from qnet.scenarios.simulate import link_qbers, link_rates, simulate
from qnet.scenarios.spec import NetworkSpec

GOAL_S = 60.0


def network(nodes: int, links_per_node: float = 1.6, demands: int = 100, seed: int = 1) -> NetworkSpec:
    """A random connected mesh of ``nodes`` trusted nodes with SAEs at every node."""
    rng = np.random.default_rng(seed)
    side = 400.0 * math.sqrt(nodes / 50)  # the same density at every size
    xy = rng.uniform(0, side, size=(nodes, 2))
    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    graph = nx.Graph()
    graph.add_nodes_from(range(nodes))
    order = np.dstack(np.unravel_index(np.argsort(dist, axis=None), dist.shape))[0]
    target = int(links_per_node * nodes)
    for i, j in order:
        if i < j and graph.number_of_edges() < target and dist[i, j] * 1.2 <= 80:
            graph.add_edge(int(i), int(j))
    for comp in list(nx.connected_components(graph))[1:]:  # join stragglers to the main part
        a = next(iter(comp))
        b = min((n for n in graph if n not in comp), key=lambda n: dist[a, n])
        graph.add_edge(a, int(b))
    links = [{"endpoints": [f"N{a}", f"N{b}"], "length_km": float(min(max(round(dist[a, b] * 1.2), 10), 80)),
              "attenuation_db_per_km": 0.2} for a, b in graph.edges]
    pairs = rng.choice(nodes, size=(demands, 2))
    spec = {
        "name": f"mesh{nodes}", "nodes": [{"name": f"N{i}"} for i in range(nodes)], "links": links,
        "applications": [{"sae_id": f"S{i}", "node": f"N{i}"} for i in range(nodes)],
        "demands": [{"name": f"d{k}", "between": [f"S{a}", f"S{b}"], "key_rate_bps": float(rng.uniform(1e3, 5e3))}
                    for k, (a, b) in enumerate(pairs) if a != b],
        "faults": [{"at": "6h", "action": "cut", "link": "-".join(links[0]["endpoints"]), "until": "8h"},
                   {"at": "12h", "action": "eavesdrop", "link": "-".join(links[1]["endpoints"]), "until": "13h"}],
    }
    return NetworkSpec.model_validate(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args()
    rows = []
    print(f"qnet simulate, {args.hours:g} h simulated, 1 s control period; {machine()}")
    print(f"{'nodes':>6} {'links':>6} {'demands':>8} {'plan s':>8} {'simulate s':>11} {'route changes':>14} "
          f"{'delivered':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        spec = network(size)
        start = time.perf_counter()
        rates, qbers = link_rates(spec), link_qbers(spec)
        plan_s = time.perf_counter() - start
        start = time.perf_counter()
        result = simulate(spec, args.hours * 3600, rates=rates, qbers=qbers)
        sim_s = time.perf_counter() - start
        asked = sum(d.requested_bits for d in result.demands)
        share = sum(d.delivered_bits for d in result.demands) / asked if asked else 0.0
        rows.append({"nodes": size, "links": len(spec.links), "demands": len(spec.demands), "plan_s": plan_s,
                     "simulate_s": sim_s, "route_changes": len(result.route_changes), "delivered_share": share})
        print(f"{size:>6} {len(spec.links):>6} {len(spec.demands):>8} {plan_s:>8.1f} {sim_s:>11.1f} "
              f"{len(result.route_changes):>14} {share:>9.1%}")
    first = rows[0]
    print(f"{first['nodes']} nodes: {first['simulate_s']:.1f} s for {args.hours:g} h; goal {GOAL_S:.0f} s: "
          f"ratio {GOAL_S / first['simulate_s']:.1f}x")
    emit({"benchmark": "simulate", "hours": args.hours, "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
