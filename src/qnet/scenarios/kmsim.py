"""``qnet simulate --key-managers``: a network's life with every node running the live key manager.

The fluid model (:mod:`qnet.scenarios.simulate`) runs days of a large network in seconds on
arrays; this body runs the key management layer's own objects, the ones a live KME runs
(DESIGN.md: one brain, two bodies), on the simulation kernel's clock:

- per node: a :class:`~qnet.keys.store.KeyStore` (SQLite, in a temporary directory), the
  :class:`~qnet.keys.manager.KeyManager` (key supply, synchronisation, hand-over, the choice among
  parallel links), :class:`~qnet.keys.peers.Peers`, :class:`~qnet.keys.peers.Outbox`,
  :class:`~qnet.keys.peers.Synchroniser`, the :class:`~qnet.keys.relayer.Relayer` (route,
  coalescing, split, retries, hold-down), the ETSI 014 service and the control view
  (:class:`~qnet.control.kme_view.KMEControlView`);
- KM-to-KM messages are calls into the peer's objects in the same process: bodies, not signed
  envelopes (the signature protects a wire, and there is none here); a refusal reaches the sender
  as a :class:`~qnet.errors.PeerError` with the error body a KME answers, a stopped node as an
  unreachable peer;
- the controller is the same :class:`~qnet.control.controller.Controller`, which every node reports
  to each period (:meth:`Controller.answer`, what the live controller's ``/reports`` calls).

Each control period, in order: the links deliver key to both ends' stores, as a QKD device pair
does (a Poisson number of units about the link's mean rate, from ``kernel.rng("link/NAME")``; none
while either end holds :data:`POOL_CAP_UNITS`, as the live feeds stop); every node runs its sync
round and flushes its outbox; every node reports to the controller and takes its answer; each
demand's master asks its KME for a Poisson number of 256-bit keys about the demand's rate
(``kernel.rng("demand/NAME")``, at most the ETSI 014 ``max_key_per_request`` a call), and its slave
fetches them at its own KME with ``dec_keys``; a refused request is blocked. Faults from the spec
are applied at their times: cuts and eavesdroppers through the controller, as an operator does;
a stopped node's key manager answers nothing.

Every node's relay attempts (:class:`~qnet.keys.relayer.RelayDecision`) and every request's outcome
(:class:`Request`) are recorded, so this body can be compared with a live network step by step
(``tests/scenarios/test_two_bodies.py``). It costs SQLite transactions per node and period: small
networks over minutes to hours; the fluid model for days and large networks.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from qnet.control.controller import Controller, LinkReport
from qnet.control.kme_view import KMEControlView
from qnet.control.routing import RelayRouting, RoutePolicy, Router, Topology
from qnet.errors import InvalidRequestError, PeerError, QNetError
from qnet.keys.events import KMEEvent, KMMessage
from qnet.keys.manager import KeyManager, LinkInfo
from qnet.keys.peers import Outbox, Peers, Synchroniser
from qnet.keys.relay import RelayRequest
from qnet.keys.relayer import Relayer, Waiting, run_now
from qnet.keys.store import KeyStore, MalformedMessageError, StoreError
from qnet.quantum.link import key_id_strings
from qnet.scenarios.simulate import (
    _OPPOSITE,
    ADMIT_RETRY_S,
    EVE_QBER,
    LOW_WATER_UNITS,
    UNIT_BITS,
    Demand,
    DemandResult,
    FaultRecord,
    LinkResult,
    SimResult,
    admit_demands,
    plan_run,
)
from qnet.scenarios.spec import FaultAction, NetworkSpec
from qnet.security.envelope import EnvelopeError, Opened
from qnet.servers.errors import ETSI014_STATUS, error_body, status_of
from qnet.service.etsi014 import ETSI014Service, KMELimits
from qnet.sim.kernel import Kernel

__all__ = ["POOL_CAP_UNITS", "KMNetwork", "Request", "network_controller", "simulate_key_managers"]

POOL_CAP_UNITS = 100_000
"""Units a link's store holds at most before its feed stops (the live feeds' ``max_units``)."""


@dataclass(frozen=True)
class Request:
    """One enc_keys call of a demand and what came of it."""

    time_s: float
    demand: str
    number: int
    delivered: int
    route: tuple[str, ...]
    """The route its keys took (two nodes: a direct link), empty if refused before one was chosen."""
    error: str | None = None
    """The error's class (``InsufficientKeyError``, ``NoRouteError``, ...) if it was refused."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"time_s": self.time_s, "demand": self.demand, "number": self.number, "delivered": self.delivered,
                "route": list(self.route), "error": self.error}


class SimKME:
    """One node's key manager with everything a live KME runs around it, minus HTTP."""

    def __init__(self, net: KMNetwork, name: str, store_url: str) -> None:
        spec, self.net, self.name = net.spec, net, name
        self.store = KeyStore(store_url, name)
        links = [LinkInfo(lk.label, lk.endpoints[1] if lk.endpoints[0] == name else lk.endpoints[0],
                          (lk.endpoints[0], lk.endpoints[1])) for lk in spec.links if name in lk.endpoints]
        local = [a.sae_id for a in spec.applications if a.node == name]
        remote = {a.sae_id: a.node for a in spec.applications if a.node != name}
        access = {a.sae_id: a.peers for a in spec.applications if a.peers is not None}
        self.manager = KeyManager(self.store, links, local, remote, unit_bits=UNIT_BITS, access=access,
                                  clock=net.clock)
        self.peers = Peers(self.manager, clock=net.clock)
        self.outbox = Outbox(self.manager, self.peers)
        self.manager.notify_peer = lambda _peer, message_id: self.outbox.queued(message_id)
        self.synchroniser = Synchroniser(self.manager, self.peers, {lk.link_id: LOW_WATER_UNITS for lk in links})
        self.routing = RelayRouting(Router(net.topology, net.policy))
        self.relayer = Relayer(self.manager, self.routing, self.send_async, peers=self.peers, clock=net.clock)
        self.service = ETSI014Service(self.manager, route_to=self.relayer.route_to)
        self.control = KMEControlView(self.manager, self.routing, self.relayer, unit_bits=UNIT_BITS)

    def send(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """A KM-to-KM message to ``peer``, in-process."""
        return self.net.deliver(self.name, peer, body)

    async def send_async(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """The same, for the relayer (it never suspends)."""
        return self.net.deliver(self.name, peer, body)

    def receive(self, opened: Opened) -> dict[str, Any]:
        """Act on a message from a peer, as the KME's ``/km/v1/messages`` does."""
        if opened.body.get("type") == KMMessage.RELAY:
            return run_now(self.relayer.hop(opened))
        return self.manager.handle(opened)

    def enc_keys(self, master: str, slave: str, number: int) -> tuple[list[str], tuple[str, ...]]:
        """Keys for ``master`` to share with ``slave``: their key_IDs and route.

        Raises:
            QNetError: as the ETSI 014 API refuses the request.
        """
        plan = self.service.enc_plan(master, slave, number, UNIT_BITS)
        if plan.relayed:
            answer = _Answer()
            if self.relayer.submit(plan.target, Waiting(RelayRequest(master, (slave,), number, UNIT_BITS), answer)):
                run_now(self.relayer.work(plan.target))
            return [k.key_ID for k in answer.get()], tuple(plan.route)
        body = self.service.deliver(plan)
        self.outbox.flush(self.send)
        return [k["key_ID"] for k in body["keys"]], tuple(plan.route)


class _Answer:
    """A relayed request's answer (what an asyncio future is to the live KME)."""

    def __init__(self) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._value, self._done = result, True

    def set_exception(self, exception: BaseException, /) -> None:
        self._error, self._done = exception, True

    def get(self) -> Any:
        if not self._done:
            raise RuntimeError("the relay did not answer")
        if self._error is not None:
            raise self._error
        return self._value


class KMNetwork:
    """Every node's key manager, the links between them and the controller, stepped once a period.

    Args:
        spec: a checked spec.
        rates: link name -> mean secret key rate (bit/s).
        qbers: link name -> QBER its ends report.
        root: where the stores go.
        kernel: the simulation kernel (its clock and random streams).
        period_s: the control period.
    """

    def __init__(self, spec: NetworkSpec, rates: Mapping[str, float], qbers: Mapping[str, float], root: Path,
                 kernel: Kernel, period_s: float = 1.0) -> None:
        self.spec, self.kernel, self.period_s = spec, kernel, period_s
        self.rates, self.qbers = dict(rates), dict(qbers)
        pol = spec.policies
        self.policy = RoutePolicy(pol.max_hops, frozenset(pol.excluded_nodes), pol.min_key_rate_bps)
        self.topology = Topology(tuple(n.name for n in spec.nodes),
                                 tuple((lk.endpoints[0], lk.endpoints[1], lk.label) for lk in spec.links))
        self.ctl = network_controller(spec, self.rates, period_s)
        self.nodes = {n.name: SimKME(self, n.name, f"sqlite:///{root / n.name}.db") for n in spec.nodes}
        self.down: set[str] = set()
        self.demands = [Demand(d.label, (d.between[0], d.between[1]), d.key_rate_bps, d.priority)
                        for d in sorted(spec.demands, key=lambda d: -d.priority)]
        self.saes = {a.sae_id: a.node for a in spec.applications}
        self.requests: list[Request] = []
        self.faults: list[FaultRecord] = []
        self.made = dict.fromkeys(self.rates, 0)
        self.stored = dict.fromkeys(self.rates, 0)
        self.discarded = dict.fromkeys(self.rates, 0)
        self.asked = dict.fromkeys((d.name for d in self.demands), 0)
        self.got = dict.fromkeys((d.name for d in self.demands), 0)
        self._admitted_s = -math.inf
        self._nonces = itertools.count()
        self._limits = KMELimits()

    def clock(self) -> float:
        """Simulated seconds."""
        return self.kernel.now_s

    def close(self) -> None:
        """Close every store."""
        for node in self.nodes.values():
            node.store.close()

    # -- the transport -----------------------------------------------------------------------------

    def deliver(self, sender: str, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """A message from ``sender`` to ``peer``'s key manager; its answer.

        Raises:
            PeerError: if ``peer`` is stopped (unreachable) or refuses the message (its error body).
        """
        if peer in self.down:
            raise PeerError(f"peer unreachable: {peer} is stopped")
        opened = Opened(sender, f"{sender}/{next(self._nonces)}", self.clock(), body)
        receiver = self.nodes[peer]
        try:
            return receiver.receive(opened)
        except QNetError as exc:  # as the KME's /km/v1/messages answers (qnet.servers.kme)
            if isinstance(exc, EnvelopeError):
                receiver.manager.refuse(exc.reason, sender)
            elif isinstance(exc, StoreError) and not isinstance(exc, MalformedMessageError) and \
                    body.get("type") != KMMessage.RELAY:
                receiver.manager.event(KMEEvent.SYNC_MISMATCH, exc.message)
                exc = InvalidRequestError(exc.message, exc.details)
            status = status_of(exc, ETSI014_STATUS) or 503
            raise PeerError(f"peer refused the message ({status}): {exc.message}", status,
                            error_body(exc.message, list(exc.details))) from None

    # -- one period --------------------------------------------------------------------------------

    def supply(self) -> dict[str, list[tuple[str, bytes]]]:
        """Each producing link's new units, written to both ends' stores; returns them by link."""
        now, made = self.clock(), {}
        for lk in self.spec.links:
            a, b = (self.nodes[e] for e in lk.endpoints)
            meta = a.store.meta()
            eve, cut = meta.get(f"eve/{lk.label}") == "1", meta.get(f"cut/{lk.label}") == "1"
            working = not (eve or cut or self.down & set(lk.endpoints))
            for node in (a, b):
                node.store.set_meta(f"qber/{lk.label}", f"{EVE_QBER if eve else self.qbers.get(lk.label, 0.0):.4f}")
                node.store.set_meta(f"skr/{lk.label}", f"{self.rates[lk.label] if working else 0.0:.1f}")
            if not working:
                continue
            rng = self.kernel.rng(f"link/{lk.label}")
            count = int(rng.poisson(self.rates[lk.label] * self.period_s / UNIT_BITS))
            raw, size = rng.bytes(count * (16 + UNIT_BITS // 8)), UNIT_BITS // 8
            ids = key_id_strings(self.made[lk.label], raw[:16 * count])  # ordered, as a live link's
            units = [(key_id, raw[16 * count + i * size:16 * count + (i + 1) * size]) for i, key_id in enumerate(ids)]
            self.made[lk.label] += count
            if any(n.store.held(lk.label) >= POOL_CAP_UNITS for n in (a, b)):
                self.discarded[lk.label] += count
                continue
            for node in (a, b):
                node.store.add_units(lk.label, (lk.endpoints[0], lk.endpoints[1]), units, now, confirmed=True)
            self.stored[lk.label] += count
            made[lk.label] = units
        return made

    def exchange(self) -> None:
        """Every running node's sync round, upkeep and outbox flush."""
        for name, node in self.nodes.items():
            if name not in self.down:
                node.synchroniser.round(node.send)
                node.synchroniser.upkeep()
                node.outbox.flush(node.send)

    def control(self) -> None:
        """Every running node reports to the controller and takes its answer; sessions are
        admitted for demands without one now and then (:data:`ADMIT_RETRY_S`)."""
        now = self.clock()
        self.ctl.tick(now)
        for name, node in self.nodes.items():
            if name in self.down:
                continue
            report = node.control.report(now)
            answer = self.ctl.answer(name, [LinkReport.from_dict(r) for r in report["links"]], now,
                                     [(e["time_s"], e["kind"], e["detail"], e["seq"], e["count"])
                                      for e in report["events"]], boot=report["boot"])
            node.control.answered(report, answer)
        if any(d.session is None for d in self.demands) and now - self._admitted_s >= ADMIT_RETRY_S:
            self._admitted_s = now
            admit_demands(self.ctl, self.demands, now)

    def serve(self, counts: Mapping[str, int]) -> None:
        """Each demand asks for ``counts[name]`` keys (higher priorities first)."""
        for d in self.demands:
            number = counts.get(d.name, 0)
            self.asked[d.name] += number
            while number > 0:
                batch = min(number, self._limits.max_key_per_request)
                number -= batch
                self.got[d.name] += self._request(d, batch)

    def _request(self, d: Demand, number: int) -> int:
        master, slave = d.saes
        here, there = self.saes[master], self.saes[slave]
        now = self.clock()
        if here in self.down:
            self.requests.append(Request(now, d.name, number, 0, (), "NodeDown"))
            return 0
        try:
            key_ids, route = self.nodes[here].enc_keys(master, slave, number)
            if there in self.down:
                raise PeerError(f"{there} is stopped: its slave cannot fetch the keys")
            self.nodes[there].service.dec_keys(slave, master, key_ids)
        except QNetError as exc:
            self.requests.append(Request(now, d.name, number, 0, (), type(exc).__name__))
            return 0
        self.requests.append(Request(now, d.name, number, number, route))
        return number

    def step(self, counts: Mapping[str, int]) -> None:
        """One period at the kernel's time now."""
        self.supply()
        self.exchange()
        self.control()
        self.serve(counts)
        self.exchange()

    def fault(self, action: FaultAction, target: str) -> None:
        """Apply one fault of the schedule now (cuts and eavesdroppers through the controller)."""
        now = self.clock()
        self.faults.append(FaultRecord(now, action, target))
        if action is FaultAction.CUT:
            self.ctl.cut(target, now)
        elif action is FaultAction.RESTORE:
            self.ctl.restore(target, now)
        elif action in (FaultAction.EAVESDROP, FaultAction.EAVESDROP_END):
            self.ctl.eavesdrop(target, action is FaultAction.EAVESDROP, now)
        elif action is FaultAction.NODE_DOWN:
            self.down.add(target)
        else:
            self.down.discard(target)

    def decisions(self) -> list[dict[str, Any]]:
        """Every node's relay attempts, in time order."""
        out = [{"node": name, **d.as_dict()} for name, node in self.nodes.items() for d in node.relayer.decisions]
        return sorted(out, key=lambda d: (d["time_s"], d["node"]))

    def pools(self) -> np.ndarray:
        """Bits in each link's pool (the units its first end holds for either end)."""
        return np.array([self.nodes[lk.endpoints[0]].store.held(lk.label) * UNIT_BITS for lk in self.spec.links],
                        dtype=float)


def network_controller(spec: NetworkSpec, rates: Mapping[str, float], period_s: float = 1.0) -> Controller:
    """The controller of ``spec`` as both bodies run it (admission capacity: the links' mean rates)."""
    pol = spec.policies
    topology = Topology(tuple(n.name for n in spec.nodes),
                        tuple((lk.endpoints[0], lk.endpoints[1], lk.label) for lk in spec.links))
    return Controller(topology, RoutePolicy(pol.max_hops, frozenset(pol.excluded_nodes), pol.min_key_rate_bps),
                      saes={a.sae_id: a.node for a in spec.applications},
                      access={a.sae_id: a.peers for a in spec.applications if a.peers is not None},
                      capacity_bps=dict(rates), control_period_s=period_s, qber_threshold=pol.qber_alarm_threshold,
                      low_water_units=LOW_WATER_UNITS)


def simulate_key_managers(spec: NetworkSpec, duration_s: float, *, control_period_s: float = 1.0,
                          rates: Mapping[str, float] | None = None, qbers: Mapping[str, float] | None = None,
                          samples: int = 600, seed: int = 0,
                          progress: Callable[[float], None] | None = None) -> SimResult:
    """Run ``spec`` for ``duration_s`` simulated seconds with every node's live key manager (see
    the module's docstring); the result has the fluid model's shape, plus ``decisions`` and
    ``requests``.

    Raises:
        ValueError: for a duration or period that is not positive.
    """
    rates, qbers, planning_s = plan_run(spec, duration_s, control_period_s, rates, qbers)
    planned = time.perf_counter()
    kernel = Kernel(seed)
    quiet = logging.getLogger("qnet.keys")  # each event is in the result; not a warning per event on stderr
    level, quiet.level = quiet.level, logging.ERROR
    with tempfile.TemporaryDirectory(prefix="qnet-kmsim-") as tmp:
        net = KMNetwork(spec, rates, qbers, Path(tmp), kernel, control_period_s)
        try:
            result = _run(net, kernel, duration_s, samples, progress)
        finally:
            net.close()
            quiet.setLevel(level)
    result.seed, result.stochastic, result.body = seed, True, "key-managers"
    result.wall_s, result.planning_s = time.perf_counter() - planned, planning_s
    return result


def _run(net: KMNetwork, kernel: Kernel, duration_s: float, samples: int,
         progress: Callable[[float], None] | None) -> SimResult:
    for fault in net.spec.faults:
        target = fault.link or fault.node or ""
        kernel.at_s(fault.at_s(), partial(net.fault, fault.action, target))
        end = fault.until_s()
        if end is not None:
            kernel.at_s(end, partial(net.fault, _OPPOSITE[fault.action], target))
    times, pools, delivered = [], [], []
    every = max(1, round(duration_s / net.period_s / samples))

    def ticker() -> Any:
        rngs = {d.name: kernel.rng(f"demand/{d.name}") for d in net.demands}
        for i in range(math.floor(duration_s / net.period_s + 1e-9)):
            yield kernel.timeout_s(net.period_s)
            net.step({d.name: int(rngs[d.name].poisson(d.rate_bps * net.period_s / UNIT_BITS)) for d in net.demands})
            if i % every == 0:
                times.append(kernel.now_s)
                pools.append(net.pools())
                delivered.append([net.got[d.name] * UNIT_BITS for d in net.demands])
                if progress:
                    progress(kernel.now_s)

    kernel.process(ticker())
    kernel.run_until_s(duration_s + 1e-9)
    return _result(net, duration_s, np.array(times), np.array(pools).T, np.array(delivered, dtype=float).T)


def _result(net: KMNetwork, duration_s: float, times: np.ndarray, pools: np.ndarray,
            delivered: np.ndarray) -> SimResult:
    final = net.pools()
    links = []
    for i, lk in enumerate(net.spec.links):
        made, stored = net.made[lk.label] * UNIT_BITS, net.stored[lk.label] * UNIT_BITS
        consumed = max(stored - final[i], 0.0)
        links.append(LinkResult(lk.label, (lk.endpoints[0], lk.endpoints[1]), net.rates[lk.label], made, stored,
                                consumed, net.discarded[lk.label] * UNIT_BITS, float(final[i]),
                                consumed / made if made else 0.0))
    order = {d.label: i for i, d in enumerate(net.spec.demands)}
    demands = sorted(net.demands, key=lambda d: order[d.name])
    results = [DemandResult(d.name, d.saes, d.rate_bps, d.priority, net.asked[d.name] * UNIT_BITS,
                            net.got[d.name] * UNIT_BITS, d.route, d.session.reroutes if d.session else 0, d.refused)
               for d in demands]
    index = [net.demands.index(d) for d in demands]
    result = SimResult(net.spec.name, duration_s, net.period_s, links, results, times, pools,
                       delivered[index] if delivered.size else delivered, list(net.ctl.events), list(net.faults))
    result.decisions = net.decisions()
    result.requests = [r.as_dict() for r in net.requests]
    return result
