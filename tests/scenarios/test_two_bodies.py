"""One brain, two bodies (DESIGN.md): the same scenario through ``qnet simulate --key-managers``
(:class:`qnet.scenarios.kmsim.KMNetwork`: the key management objects called in-process) and through
the live servers' code (each node a :class:`qnet.servers.node.KMENode` behind its FastAPI app, KM
messages and relays as signed envelopes over ``httpx.ASGITransport``, reports to the controller's
app, SAEs calling the ETSI 014 API), on the same clock, the same key from the links and the same
requests. Their decisions must agree step by step: every request's outcome, every relay attempt
(route, outcome, what was held down), every store's stock on every link.

The scenario: a ring A-B-C-D with a one-way demand between neighbours (SAE_A -> SAE_B: direct keys,
the hand-over feeding A's side of A-B) and a relayed one of higher priority (SAE_A -> SAE_C over two
hops); link A-B is cut at step 8 (both demands move round the other side: relays A-D-C and A-D-C-B)
and restored at step 16; node B stops at step 20, just before the SAEs' requests, without a word to
anyone (its key manager answers nothing): A's relay to C through B fails, B is held down and the
relay is retried on A-D-C; the direct demand is refused from then on (its slave's KME is silent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qnet.clients.km import AsyncKMClient
from qnet.control.controller import Controller
from qnet.scenarios.deploy import init_deployment
from qnet.scenarios.kmsim import UNIT_BITS, KMNetwork, network_controller
from qnet.scenarios.simulate import Demand, admit_demands
from qnet.scenarios.spec import FaultAction, NetworkSpec
from qnet.scenarios.validate import parse_spec
from qnet.servers.config import load_config
from qnet.servers.controller import create_app as controller_app
from qnet.servers.kme import create_app as kme_app
from qnet.servers.node import KMENode
from qnet.sim.kernel import Kernel
from tests.helpers import AsCaller, asgi_request

RING = """
name: ring4
nodes:
  - {name: A, kind: user_node}
  - {name: B}
  - {name: C, kind: user_node}
  - {name: D}
links:
  - {endpoints: [A, B], length_km: 20}
  - {endpoints: [B, C], length_km: 20}
  - {endpoints: [C, D], length_km: 20}
  - {endpoints: [D, A], length_km: 20}
applications:
  - {sae_id: SAE_A, node: A}
  - {sae_id: SAE_B, node: B}
  - {sae_id: SAE_C, node: C}
demands:
  - {between: [SAE_A, SAE_B], key_rate_bps: 40000}
  - {between: [SAE_A, SAE_C], key_rate_bps: 20000, priority: 1}
"""
RATES = {"A-B": 60_000.0, "B-C": 60_000.0, "C-D": 60_000.0, "D-A": 60_000.0}
QBERS = dict.fromkeys(RATES, 0.02)
STEPS, CUT_AT, RESTORE_AT, STOP_AT = 24, 8, 16, 20
API = "/api/v1/keys"


class Unreachable(httpx.AsyncBaseTransport):
    """A stopped KME: every connection refused."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


class LiveBody:
    """The servers' code in-process: KMENodes behind their apps, the controller behind its app."""

    def __init__(self, root: Path, spec: NetworkSpec, kernel: Kernel) -> None:
        ports = {n.name: i + 1 for i, n in enumerate(spec.nodes)} | {"controller": 90, "dashboard": 91}
        dep = init_deployment(root, spec, ports=ports, source={"kind": "prng", "max_units": 100_000})
        clock = lambda: kernel.now_s  # noqa: E731 - the simulation's clock, shared by both bodies
        self.kernel = kernel
        self.nodes = {n.name: KMENode(load_config(dep.configs[n.name]), clock=clock) for n in spec.nodes}
        self.apps = {name: kme_app(node) for name, node in self.nodes.items()}
        self.ctl: Controller = network_controller(spec, RATES)
        self.ctl_app = controller_app(self.ctl, clock=clock)  # its lifespan (a wall-clock ticker) is not run
        self.demands = [Demand(d.label, (d.between[0], d.between[1]), d.key_rate_bps, d.priority)
                        for d in sorted(spec.demands, key=lambda d: -d.priority)]
        self.saes = {a.sae_id: a.node for a in spec.applications}
        for name, node in self.nodes.items():
            for peer in node.manager.links:
                transport = httpx.ASGITransport(app=AsCaller(self.apps[peer], name))
                node.connect_peer(peer, AsyncKMClient(f"http://{peer}", None, transport=transport))
        self.runner = asyncio.Runner()
        self.lives = [app.router.lifespan_context(app) for app in self.apps.values()]
        for life in self.lives:
            self.runner.run(life.__aenter__())
        self.requests: list[tuple[str, int, int, int]] = []
        self.down: set[str] = set()

    def stop(self, name: str) -> None:
        """``name``'s KME stops answering (its peers' connections are refused)."""
        self.down.add(name)
        for node in self.nodes.values():
            if name in node.manager.links:
                node.connect_peer(name, AsyncKMClient(f"http://{name}", None, transport=Unreachable()))

    def running(self) -> dict[str, KMENode]:
        return {name: node for name, node in self.nodes.items() if name not in self.down}

    def close(self) -> None:
        for life in self.lives:
            self.runner.run(life.__aexit__(None, None, None))
        self.runner.close()
        for node in self.nodes.values():
            node.store.close()

    def call(self, app: Any, caller: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return asgi_request(self.runner, app, caller, method, path, **kwargs)

    def supply(self, units: dict[str, list[tuple[str, bytes]]], sim: KMNetwork) -> None:
        """The same units (and the same QKD module figures) as the simulated links delivered."""
        for lk in sim.spec.links:
            for end in lk.endpoints:
                live, simulated = self.nodes[end].store, sim.nodes[end].store
                for name in (f"qber/{lk.label}", f"skr/{lk.label}"):
                    live.set_meta(name, simulated.get_meta(name) or "")
                if lk.label in units:
                    live.add_units(lk.label, (lk.endpoints[0], lk.endpoints[1]), units[lk.label], self.kernel.now_s,
                                   confirmed=True)

    def exchange(self) -> None:
        for node in self.running().values():
            node.synchroniser.round(lambda peer, body, node=node: self.runner.run(node.send_async(peer, body)))
            node.synchroniser.upkeep()
            self.runner.run(node.outbox.flush_async(node.send_async))

    def control(self, admit: bool) -> None:
        now = self.kernel.now_s
        self.ctl.tick(now)
        for name, node in self.running().items():
            report = node.control.report(now)
            r = self.call(self.ctl_app, name, "POST", "/control/v1/reports", json=report)
            assert r.status_code == 200, r.text
            node.control.answered(report, r.json())
        if admit:
            admit_demands(self.ctl, self.demands, now)

    def serve(self, counts: dict[str, int]) -> None:
        for d in self.demands:
            master, slave = d.saes
            number = counts[d.name]
            if not number:
                continue
            if self.saes[master] in self.down:
                self.requests.append((d.name, number, 0, 0))
                continue
            r = self.call(self.apps[self.saes[master]], master, "POST", f"{API}/{slave}/enc_keys",
                          json={"number": number, "size": UNIT_BITS})
            got = 0
            if r.status_code == 200 and self.saes[slave] not in self.down:
                ids = {"key_IDs": [{"key_ID": k["key_ID"]} for k in r.json()["keys"]]}
                dec = self.call(self.apps[self.saes[slave]], slave, "POST", f"{API}/{master}/dec_keys", json=ids)
                assert dec.status_code == 200, dec.text
                assert dec.json()["keys"] == r.json()["keys"]  # identical at both ends
                got = number
            self.requests.append((d.name, number, got, r.status_code))


@pytest.fixture
def bodies(tmp_path: Path) -> Iterator[tuple[KMNetwork, LiveBody, Kernel]]:
    spec = parse_spec(RING, source="ring4")
    kernel = Kernel(7)
    (tmp_path / "sim").mkdir()
    sim = KMNetwork(spec, RATES, QBERS, tmp_path / "sim", kernel)
    live = LiveBody(tmp_path / "live", spec, kernel)
    try:
        yield sim, live, kernel
    finally:
        live.close()
        sim.close()


def _stocks(nodes: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    return {(name, lid): (node.store.owned(lid), node.store.stock(lid))
            for name, node in nodes.items() for lid in node.manager.by_id}


def _decisions(nodes: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(name, d.time_s, d.target, d.route, d.keys, d.outcome, d.failed)
            for name, node in nodes.items() for d in node.relayer.decisions]


def test_simulation_and_live_servers_decide_alike_step_by_step(bodies: tuple[KMNetwork, LiveBody, Kernel]) -> None:
    sim, live, kernel = bodies
    rng = kernel.rng("demands")
    for step in range(1, STEPS + 1):
        kernel.run_until_s(float(step))
        if step in (CUT_AT, RESTORE_AT):
            action = FaultAction.CUT if step == CUT_AT else FaultAction.RESTORE
            sim.fault(action, "A-B")
            (live.ctl.cut if action is FaultAction.CUT else live.ctl.restore)("A-B", kernel.now_s)
        counts = {d.name: int(rng.poisson(d.rate_bps / UNIT_BITS)) for d in sim.demands}
        live.supply(sim.supply(), sim)
        sim.exchange()
        live.exchange()
        admit = step == 1 or step in (CUT_AT, RESTORE_AT)
        sim.control()
        live.control(admit)
        if admit:
            admit_demands(sim.ctl, sim.demands, kernel.now_s)
        if step == STOP_AT:  # after the sync round and the reports: nobody knows yet
            sim.fault(FaultAction.NODE_DOWN, "B")
            live.stop("B")
        asked, answered = len(sim.requests), len(live.requests)
        sim.serve(counts)
        live.serve(counts)
        sim.exchange()
        live.exchange()
        simulated = [(r.demand, r.number, r.delivered, r.error is None) for r in sim.requests[asked:]]
        assert simulated == [(n, k, got, status == 200) for n, k, got, status in live.requests[answered:]], \
            f"step {step}: the requests' outcomes differ"
        assert _decisions(sim.nodes) == _decisions(live.nodes), f"step {step}: the relay decisions differ"
        assert _stocks(sim.nodes) == _stocks(live.nodes), f"step {step}: the stores differ"
        assert [d.route for d in sim.demands] == [d.route for d in live.demands], f"step {step}: sessions differ"
    relays = _decisions(sim.nodes)
    routes = {d[3] for d in relays if d[5] == "relayed"}
    assert ("A", "B", "C") in routes and ("A", "D", "C") in routes  # around the cut, and back
    assert any(d[3] == ("A", "D", "C", "B") for d in relays)  # the direct demand relayed while A-B is cut
    stopped = [(d[3], d[5], d[6]) for d in relays if d[1] == STOP_AT]
    assert stopped == [(("A", "B", "C"), "hop-failed", "B"), (("A", "D", "C"), "relayed", None)]  # the retry
    assert {status for *_, status in live.requests} == {200, 503}
    assert sum(got for _, _, got, _ in live.requests) > 0.6 * sum(k for _, k, _, _ in live.requests)
