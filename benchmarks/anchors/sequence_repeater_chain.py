# Copyright qnet contributors. Licensed under the Apache License, Version 2.0.
"""Anchor: SeQUeNCe's repeater chain (RouterNetTopo + network manager request), timed on one request.

Runs in an interpreter where ``sequence`` 1.3.1 is installed (it needs Python >= 3.12, so a separate
virtualenv is the normal setup). Only SeQUeNCe's public API is used: a RouterNetTopo built from a
topology dict, RequestApp on the two end routers, and the network manager ``request`` made by
``RequestApp.start``. Prints one JSON object on stdout.

Scenario: a linear chain of N quantum routers, links of --link-km with a BSM node in the middle,
single-heralded entanglement generation with the Bell-diagonal-state formalism, nested (doubling)
swapping (SeQUeNCe's built-in rule order), memory cut-off at the coherence time, one end-to-end
request between router_0 and router_{N-1} for --duration-s simulated seconds.

Usage: python sequence_repeater_chain.py --nodes 9 --duration-s 1.0 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time

PS_PER_S = 10**12
PS_PER_US = 10**6


def build_config(args: argparse.Namespace) -> dict:
    """The RouterNetTopo topology dict (the same JSON shape SeQUeNCe's examples load from files)."""
    names = [f"router_{i:0{args.pad}d}" for i in range(args.nodes)]
    link_m = args.link_km * 1000.0
    cc_ps_per_km = args.cc_us_per_km * PS_PER_US
    detector = {"efficiency": args.detector_efficiency, "dark_count": args.dark_count,
                "time_resolution": args.time_resolution_ps, "count_rate": args.detector_count_rate}
    memory = {"fidelity": args.fidelity, "frequency": args.memory_frequency,
              "efficiency": args.memory_efficiency, "coherence_time": args.coherence_s,
              "cutoff_ratio": args.cutoff_ratio, "decoherence_errors": [1 / 3, 1 / 3, 1 / 3]}
    router_template = {"MemoryArray": memory,
                       "EntanglementSwapping": {"swapping_success_prob": args.swap_success}}
    if args.swap_degradation is not None:
        router_template["EntanglementSwapping"]["swapping_degradation"] = args.swap_degradation
    config = {
        "templates": {
            "router": router_template,
            "bsm": {"encoding_type": "single_heralded",
                    "SingleHeraldedBSM": {"detectors": [dict(detector), dict(detector)]}},
        },
        "nodes": [{"name": n, "type": "QuantumRouter", "seed": args.seed * 10007 + i,
                   "memo_size": args.memories, "template": "router"} for i, n in enumerate(names)],
        # meet_in_the_middle: RouterNetTopo inserts BSM.<a>.<b> at distance/2 from each router and
        # derives the router-BSM classical delay as half the router-router classical delay.
        "qconnections": [{"node1": a, "node2": b, "attenuation": args.attenuation_db_per_km / 1000.0,
                          "distance": link_m, "type": "meet_in_the_middle",
                          "seed": args.seed * 10007 + 5000 + i, "template": "bsm"}
                         for i, (a, b) in enumerate(itertools.pairwise(names))],
        # swapping results and resource-manager requests go directly between any two routers,
        # so every router pair gets a classical connection, delay from the fibre length
        "cconnections": [{"node1": names[i], "node2": names[j],
                          "distance": (j - i) * link_m,
                          "delay": round((j - i) * args.link_km * cc_ps_per_km)}
                         for i, j in itertools.combinations(range(args.nodes), 2)],
        "formalism": args.formalism,
    }
    return config, names


def main() -> None:  # noqa: PLR0915 - one linear script: parse, build, run, report
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=9)
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memories", type=int, default=10, help="memories per router")
    parser.add_argument("--memo-size", type=int, default=None,
                        help="request memory_size (memories per link end; middle routers need 2x); "
                             "default memories // 2")
    parser.add_argument("--link-km", type=float, default=20.0)
    parser.add_argument("--fidelity", type=float, default=0.99, help="raw link (memory) fidelity")
    parser.add_argument("--coherence-s", type=float, default=1.0)
    parser.add_argument("--cutoff-ratio", type=float, default=1.0, help="cut-off / coherence time")
    parser.add_argument("--swap-success", type=float, default=1.0,
                        help="QuantumRouter swapping_success_prob (SeQUeNCe default 1)")
    parser.add_argument("--swap-degradation", type=float, default=None)
    parser.add_argument("--target-fidelity", type=float, default=0.5,
                        help="request target fidelity (swaps and deliveries need >= this)")
    parser.add_argument("--attenuation-db-per-km", type=float, default=0.2)
    parser.add_argument("--detector-efficiency", type=float, default=0.9)
    parser.add_argument("--dark-count", type=float, default=0.0)
    parser.add_argument("--time-resolution-ps", type=int, default=150)
    parser.add_argument("--detector-count-rate", type=float, default=25e6)
    parser.add_argument("--memory-efficiency", type=float, default=1.0)
    parser.add_argument("--memory-frequency", type=float, default=2e6)
    parser.add_argument("--cc-us-per-km", type=float, default=5.0)
    parser.add_argument("--formalism", default="bell_diagonal")
    parser.add_argument("--start-s", type=float, default=None,
                        help="reservation start (default: after the RSVP round trip, >= 10 ms)")
    parser.add_argument("--pad", type=int, default=0,
                        help="zero-pad router indices (changes which side is EG 'primary')")
    parser.add_argument("--diagnostics", action="store_true",
                        help="enable SeQUeNCe metrics (EG/ES/expiry counters); slows the run")
    parser.add_argument("--max-times", type=int, default=0,
                        help="also output up to this many delivery times (s)")
    args = parser.parse_args()
    if args.memo_size is None:
        args.memo_size = max(1, args.memories // 2)

    from importlib.metadata import version

    from sequence.app.request_app import RequestApp
    from sequence.constants import BELL_DIAGONAL_STATE_FORMALISM, SINGLE_HERALDED
    from sequence.entanglement_management.generation import EntanglementGenerationA, EntanglementGenerationB
    from sequence.entanglement_management.purification import PurificationProtocol
    from sequence.entanglement_management.swapping import EntanglementSwappingA, EntanglementSwappingB
    from sequence.topology.router_net_topo import RouterNetTopo
    from sequence.utils import metrics

    if args.formalism != BELL_DIAGONAL_STATE_FORMALISM:
        sys.exit("only the bell_diagonal formalism is wired up here (single-heralded EG needs it)")
    # single-heralded generation + BDS swapping/purification, as SeQUeNCe's BDS tutorial does
    EntanglementGenerationA.set_global_type(SINGLE_HERALDED)
    EntanglementGenerationB.set_global_type(SINGLE_HERALDED)
    EntanglementSwappingA.set_formalism(BELL_DIAGONAL_STATE_FORMALISM)
    EntanglementSwappingB.set_formalism(BELL_DIAGONAL_STATE_FORMALISM)
    PurificationProtocol.set_formalism(BELL_DIAGONAL_STATE_FORMALISM)

    link_cc_ps = args.link_km * args.cc_us_per_km * PS_PER_US
    rsvp_ps = 2 * (args.nodes - 1) * link_cc_ps
    start_ps = int(args.start_s * PS_PER_S) if args.start_s is not None \
        else int(max(0.01 * PS_PER_S, 1.2 * rsvp_ps))
    end_ps = start_ps + int(args.duration_s * PS_PER_S)

    config, names = build_config(args)
    config["stop_time"] = end_ps
    t_build = time.perf_counter()
    topo = RouterNetTopo(config)
    tl = topo.get_timeline()
    routers = {r.name: r for r in topo.get_nodes_by_type(RouterNetTopo.QUANTUM_ROUTER)}

    deliveries: list[tuple[int, float]] = []

    class CountingApp(RequestApp):
        """RequestApp that also remembers when each pair was delivered and its fidelity."""

        def get_memory(self, info):
            before = self.memory_counter
            fid = info.fidelity
            super().get_memory(info)
            if self.memory_counter > before:
                deliveries.append((self.node.timeline.now(), fid))

    initiator, responder = names[0], names[-1]
    app = CountingApp(routers[initiator])
    CountingApp(routers[responder])

    if args.diagnostics:
        metrics.register_time_provider(tl)
        metrics.enable([metrics.EG_METRIC, metrics.ES_METRIC, metrics.MEMORY_DECOHERENCE_RATE_METRIC])

    tl.init()
    app.start(responder=responder, start_t=start_ps, end_t=end_ps, memo_size=args.memo_size,
              fidelity=args.target_fidelity)
    build_s = time.perf_counter() - t_build
    started, cpu_started = time.perf_counter(), time.process_time()
    tl.run()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    fids = [f for _, f in deliveries]
    times = [(t - start_ps) / PS_PER_S for t, _ in deliveries]
    out = {
        "anchor": "SeQUeNCe repeater chain",
        "nodes": args.nodes,
        "pairs": app.memory_counter,
        "fidelity_mean": statistics.fmean(fids) if fids else None,
        "fidelity_min": min(fids) if fids else None,
        "fidelity_max": max(fids) if fids else None,
        "wall_s": wall,
        "cpu_s": cpu,
        "build_s": build_s,
        "events": tl.run_counter,
        "events_per_s": tl.run_counter / wall if wall > 0 else None,
        "events_per_cpu_s": tl.run_counter / cpu if cpu > 0 else None,
        "scheduled_events": tl.schedule_counter,
        "first_delivery_s": times[0] if times else None,
        "last_delivery_s": times[-1] if times else None,
        "pairs_first_half": sum(1 for t in times if t < args.duration_s / 2),
        "pairs_second_half": sum(1 for t in times if t >= args.duration_s / 2),
        "reservation_approved": app.reservation_result,
        "sequence_version": version("sequence"),
        "formalism": args.formalism,
        "generation_protocol": SINGLE_HERALDED,
        "python": sys.version.split()[0],
        "params": {"duration_s": args.duration_s, "seed": args.seed, "memories": args.memories,
                   "memo_size": args.memo_size, "link_km": args.link_km, "fidelity": args.fidelity,
                   "coherence_s": args.coherence_s, "cutoff_ratio": args.cutoff_ratio,
                   "swap_success": args.swap_success, "swap_degradation": args.swap_degradation,
                   "target_fidelity": args.target_fidelity,
                   "attenuation_db_per_km": args.attenuation_db_per_km,
                   "detector_efficiency": args.detector_efficiency, "dark_count": args.dark_count,
                   "time_resolution_ps": args.time_resolution_ps,
                   "detector_count_rate": args.detector_count_rate,
                   "memory_efficiency": args.memory_efficiency,
                   "memory_frequency": args.memory_frequency, "cc_us_per_km": args.cc_us_per_km,
                   "start_s": start_ps / PS_PER_S, "router_names": f"{names[0]}..{names[-1]}"},
    }
    if args.max_times:
        out["delivery_times_s"] = times[:args.max_times]
    if args.diagnostics:
        counts: dict[str, int] = {}
        for record in metrics.storage.get_all():
            counts[record.event_type.name] = counts.get(record.event_type.name, 0) + 1
        out["diagnostics"] = counts
        out["diagnostics"]["eg_success_per_link_end"] = {
            n: sum(1 for r in metrics.storage.get_all()
                   if r.owner_name == n and r.event_type.name == "EG_SUCCESS")
            for n in names[:3]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
