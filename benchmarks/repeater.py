"""Benchmark: a repeater chain side by side with SeQUeNCe 1.3.1, the cost-per-pair curve, a 1,000-router network.

Goal (issue 15): SeQUeNCe's chain scenario (N routers, 20 km links with a BSM station in the middle,
0.2 dB/km, detector efficiency 0.9, 10 memories per router, 2 MHz, raw fidelity 0.99, coherence time
1 s with cut-off at the coherence time, classical delays 5 us/km, one end-to-end request for 1 s, nested
swapping, Bell-diagonal states) with the same pair rate and fidelity, at least 20x faster in wall time at
N = 9 and N = 17.

The same scenario in qnet's words (``/work/anchors/SEQUENCE_SEMANTICS.md`` of the session that built
this describes SeQUeNCe's protocol as read from its source): single-heralded generation (success
eta_A eta_B / 2, one round), three one-way delays of negotiation before each emission, a swap handshake
(the swapper confirms both pairs with their far ends), SeQUeNCe's coherence time T as a depolarising
memory whose Werner parameter falls as exp(-4t/3T) (its Pauli rates are 1/3T each), i.e.
``Decay(coherence_s=0.75 T)``, 5 memories per link end. SeQUeNCe's detector dead time (40 ns at its
default 25 MHz count rate) lowers its per-attempt probability by ~6 % on short chains; qnet leaves it out.

The anchor runs in its own Python 3.12 virtualenv (``--anchor-python``; ``--setup-anchor DIR`` makes one
with ``pip install sequence==1.3.1``). Without it the script prints qnet's figures alone.

Run: python benchmarks/repeater.py [--nodes 9,17] [--anchor-python /path/to/venv/bin/python]
     [--curve 2,3,5,9,17,33,65] [--network 1000 --requests 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _common import emit, machine, one_core

from qnet.quantum.entanglement.components import LinkModel, MemoryModel
from qnet.quantum.entanglement.simulation import Policy, simulate
from qnet.quantum.entanglement.states import Decay
from qnet.quantum.entanglement.topology import Request, chain, grid

ANCHOR = Path(__file__).parent / "anchors" / "sequence_repeater_chain.py"


def scenario(nodes: int, coherence_s: float = 1.0) -> tuple[object, list[Request], Policy]:
    link = LinkModel(20.0, detector_efficiency=0.9, scheme="single_heralded", raw_fidelity=0.99,
                     negotiation_delays=3)
    memory = MemoryModel(count=10, decay=Decay(coherence_s=0.75 * coherence_s), cutoff_s=coherence_s,
                         frequency_hz=2e6)
    return chain(nodes, link=link, memory=memory), [Request("r0", f"r{nodes - 1}", memories=5)], \
        Policy(swap_handshake=True)


def run_qnet(nodes: int, duration_s: float, seed: int) -> dict[str, float]:
    graph, requests, policy = scenario(nodes)
    start = time.perf_counter()
    report = simulate(graph, requests, duration_s, policy, seed=seed)  # type: ignore[arg-type]
    wall = time.perf_counter() - start
    flow = report.flows[0]
    return {"nodes": nodes, "pairs": flow.pairs, "fidelity_mean": flow.fidelity_mean, "wall_s": wall,
            "events": report.events, "cost_per_pair_ms": 1e3 * wall / max(flow.pairs, 1)}


def run_anchor(python: str, nodes: int, duration_s: float, seed: int) -> dict[str, float] | None:
    out = subprocess.run([python, str(ANCHOR), "--nodes", str(nodes), "--duration-s", str(duration_s),
                          "--seed", str(seed)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        print(f"anchor failed at N={nodes}: {out.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def side_by_side(args: argparse.Namespace) -> None:
    for nodes in args.nodes:
        ours = [run_qnet(nodes, args.duration_s, seed) for seed in range(args.seeds)]
        row: dict[str, object] = {
            "benchmark": "repeater chain", "nodes": nodes, "machine": machine(),
            "qnet_pairs": float(np.mean([r["pairs"] for r in ours])),
            "qnet_pairs_sd": float(np.std([r["pairs"] for r in ours], ddof=1)) if len(ours) > 1 else None,
            "qnet_fidelity": float(np.mean([r["fidelity_mean"] for r in ours])),
            "qnet_wall_s": float(np.median([r["wall_s"] for r in ours])),
        }
        if args.anchor_python:
            anchor = run_anchor(args.anchor_python, nodes, args.duration_s, 0)
            if anchor is not None:
                row.update(sequence_pairs=anchor["pairs"], sequence_fidelity=anchor["fidelity_mean"],
                           sequence_wall_s=anchor["wall_s"], sequence_events_per_s=anchor.get("events_per_s"),
                           speedup=anchor["wall_s"] / float(row["qnet_wall_s"]))  # type: ignore[arg-type]
        emit(row)


def curve(args: argparse.Namespace) -> None:
    for nodes in args.curve:
        r = run_qnet(nodes, args.duration_s, 0)
        emit({"benchmark": "cost per pair", "nodes": nodes, "pairs": r["pairs"], "wall_s": round(r["wall_s"], 3),
              "cost_per_pair_ms": round(r["cost_per_pair_ms"], 4),
              "cost_per_pair_hop_us": round(1e3 * r["cost_per_pair_ms"] / (nodes - 1), 2)})


def network(args: argparse.Namespace) -> None:
    cols = 40
    rows = max(args.network // cols, 1)
    link = LinkModel(20.0, scheme="single_heralded", raw_fidelity=0.99, negotiation_delays=3)
    memory = MemoryModel(count=10, decay=Decay(coherence_s=0.75), cutoff_s=1.0)
    graph = grid(rows, cols, link=link, memory=memory)
    rng = np.random.default_rng(0)
    names = list(graph.nodes)
    requests = []
    while len(requests) < args.requests:
        a, b = rng.choice(len(names), 2, replace=False)
        requests.append(Request(names[a], names[b], memories=1))
    tracemalloc.start()
    start = time.perf_counter()
    report = simulate(graph, requests, args.duration_s, Policy(swap_handshake=True), seed=0)
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    emit({"benchmark": "network", "routers": rows * cols, "requests": len(requests),
          "admitted": len(report.flows), "refused": len(report.refused), "pairs": report.pairs,
          "fidelity_mean": float(np.nanmean([f.fidelity_mean for f in report.flows])),
          "wall_s": round(wall, 1), "events": report.events, "peak_python_mb": round(peak / 1e6, 1),
          "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
          "simulated_s": args.duration_s})


def setup_anchor(directory: Path) -> str:
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run(["python3.12", "-m", "venv", str(directory)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sequence==1.3.1"], check=True)
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="9,17", type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=5, help="qnet runs per N (pair statistics)")
    parser.add_argument("--anchor-python", default=None, help="python of a venv with sequence==1.3.1")
    parser.add_argument("--setup-anchor", type=Path, default=None, help="make that venv here first")
    parser.add_argument("--curve", default="", type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--network", type=int, default=0, help="routers of a grid network (0: skip)")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    print(one_core(), file=sys.stderr)
    if args.setup_anchor is not None:
        args.anchor_python = setup_anchor(args.setup_anchor)
    if args.nodes:
        side_by_side(args)
    if args.curve:
        curve(args)
    if args.network:
        network(args)


if __name__ == "__main__":
    main()
