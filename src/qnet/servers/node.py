"""The running key manager of one node: store, key manager, ETSI 014 service, KM-to-KM traffic.

Two background threads keep it in step with its peers:

- the **outbox flusher** sends queued ``assign`` messages as soon as they are committed, batched per
  peer in one signed envelope (a slave that asks first waits for its message); while a peer is
  unreachable, ``enc_keys`` for it answers 503 instead of handing out keys its slave cannot get;
- the **synchroniser** offers each peer the units it has not confirmed, and erases expired units.

Keys for SAEs at non-adjacent nodes are relayed (:meth:`KMENode.relay_keys`) along a route from the
control layer's router, avoiding peers that do not answer and nodes that just failed a relay; a
failed relay is retried on another route. Concurrent requests for the same target node are
coalesced: while one relay to it is in flight the others queue, then go together in one message.

A feeder (one child process for all the node's links, ``qnet.servers.feeder``) fills the store.

Every key handed out (to a master, to a slave) and every relayed key stored here for its slaves is
recorded in the node's audit log (``qnet.management.audit``, ``audit/NODE.jsonl`` beside the
configuration) before it leaves: :class:`_AuditedService` and two calls in the relay code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from qnet.clients.km import AsyncKMClient, KMClient, PeerError, tls_client_context
from qnet.control.routing import LinkState, RoutePolicy, Router, Topology
from qnet.errors import NoRouteError, UnavailableError
from qnet.keys.events import KMEEvent, KMMessage
from qnet.keys.manager import KeyManager, LinkInfo
from qnet.keys.relay import RelayRequest
from qnet.keys.relay_policy import (
    RELAY_IN_FLIGHT,
    RELAY_TRIES,
    HoldDown,
    failed_element,
    next_batch,
    split,
    units_for,
)
from qnet.keys.store import DeliveredKey, InsufficientKeyError, KeyStore, StoreError
from qnet.management.audit import AuditError, AuditLog, KeySupplyAudit, audit_path
from qnet.security.envelope import Opened, seal
from qnet.security.pki import load_signing_key, load_verify_key
from qnet.servers.agent import ControlAgent
from qnet.servers.config import KMEConfig
from qnet.service.etsi014 import EncPlan, ETSI014Service, KeyManagerLike

__all__ = ["Broadcast", "KMENode"]

log = logging.getLogger("qnet.kme")

SYNC_PERIOD_S = 0.2
WARM_PERIOD_S = 10.0
"""How often a KME pings its peers to keep its connections to them open (under KEEPALIVE_S)."""
CHECKPOINT_PERIOD_S = 1.0
STARTUP_GRACE_S = 10.0
EXPIRY_PERIOD_S = 10.0


class Broadcast:
    """Wake every waiting coroutine (an asyncio.Event that re-arms itself); ``fire`` may be called
    from any thread."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def fire(self) -> None:
        """Wake the current waiters."""
        event, loop = self._event, self._loop
        if event is None or loop is None:
            return
        self._event = None
        if _running_loop() is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def wait(self) -> Coroutine[Any, Any, bool]:
        """An awaitable for the next ``fire`` (armed now, so a fire before the first await counts)."""
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
        return self._event.wait()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(frozen=True)
class _Waiting:
    """An enc_keys request waiting for its relay: ``done`` gets its keys or its error."""

    plan: EncPlan
    done: asyncio.Future[list[DeliveredKey]]

    def fail(self, exc: BaseException) -> None:
        """Answer the request with ``exc`` (unless its client left)."""
        if not self.done.done():
            self.done.set_exception(exc)


class _AuditedService(ETSI014Service):
    """The ETSI 014 service, recording every key it hands out in the node's audit log (if any)."""

    def __init__(self, manager: KeyManagerLike, route_to: Callable[[str], list[str]],
                 audit: KeySupplyAudit | None) -> None:
        super().__init__(manager, route_to=route_to)
        self.audit = audit

    def deliver(self, plan: EncPlan) -> dict[str, Any]:
        body = super().deliver(plan)
        if self.audit is not None:
            with _audit_or_503():
                self.audit.enc_keys(_key_ids(body), master=plan.master, slaves=plan.slaves, size_bits=plan.size,
                                    route=plan.route)
        return body

    def dec_keys(self, caller: str, master: str, key_ids: Sequence[Any]) -> dict[str, Any]:
        body = super().dec_keys(caller, master, key_ids)
        if self.audit is not None:
            with _audit_or_503():
                self.audit.dec_keys(_key_ids(body), slave=caller, master=master)
        return body


def _key_ids(body: dict[str, Any]) -> list[str]:
    """The key_IDs of a Key container (nothing else of it)."""
    return [str(k["key_ID"]) for k in body["keys"]]


@contextlib.contextmanager
def _audit_or_503() -> Iterator[None]:
    """Keys whose audit record cannot be written are not handed out: 503."""
    try:
        yield
    except AuditError as exc:
        log.error("%s", exc)
        raise UnavailableError("the KME cannot write its audit log; no key is handed out without a record") from None


def _next_batch(queue: deque[_Waiting], unit_bits: int) -> list[_Waiting]:
    """The next relay batch for a target (:func:`qnet.keys.relay_policy.next_batch`): requests whose
    client left are dropped."""
    return next_batch(queue, lambda w: units_for(w.plan.number, w.plan.size, unit_bits),
                      alive=lambda w: not w.done.done())


class KMENode:
    """Everything one KME process runs, apart from the HTTP server.

    Args:
        config: the KME's configuration.
        config_path: its file (feeder processes read it); None runs without feeders.
        clock: wall-clock seconds.
    """

    def __init__(self, config: KMEConfig, config_path: Path | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.config_path, self.clock = config, config_path, clock
        self.kme_id = config.kme_id
        self.store = KeyStore(config.store_url, config.kme_id, lifetime_s=config.key_lifetime_s,
                              manual_checkpoints=True)
        links = [LinkInfo(lk.link_id, lk.peer, lk.ends) for lk in config.links]
        net = config.network
        remote = {sae: node for sae, node in net.saes.items() if node != config.kme_id}
        remote |= {sae: lk.peer for lk in config.links for sae in lk.remote_saes}
        self.manager = KeyManager(self.store, links, config.saes, remote, unit_bits=config.unit_bits,
                                  access=net.access, clock=clock)
        self.manager.notify_peer = self._notify
        self.manager.peer_ok = lambda peer: peer not in self._unreachable
        topology = Topology(tuple(net.nodes) or (config.kme_id, *self.manager.links),
                            tuple((a, b, lid) for a, b, lid in net.links) or
                            tuple((lk.ends[0], lk.ends[1], lk.link_id) for lk in config.links))
        self.router = Router(topology, RoutePolicy(net.max_hops, frozenset(net.excluded_nodes), net.min_key_rate_bps))
        self.hold_down = HoldDown()
        """Nodes and links that failed a relay recently (routed around)."""
        self.control_states: dict[str, LinkState] = {}
        """Every link's state as the controller last reported it (empty without a controller)."""
        self.session_routes: dict[str, list[str]] = {}
        self.drained: set[str] = set()
        self.sessions: list[dict[str, Any]] = []
        """The sessions that start here, as the controller last described them."""
        """Nodes the operator drained: no relay passes through them (from the controller)."""
        """Target node -> the route of a session the controller admitted from here."""
        path = audit_path(config.kme_id, config_path, config.store_url)
        self.audit = KeySupplyAudit(AuditLog(path), config.kme_id, self.store, clock) if path else None
        self.service = _AuditedService(self.manager, self.route_to, self.audit)
        self.signing_key = load_signing_key(config.signing_key)
        self.verify_keys = {lk.peer: load_verify_key(lk.peer_verify_key) for lk in config.links}
        context = tls_client_context(config.tls.ca, config.tls.cert, config.tls.key)
        self._peer_urls = {lk.peer: lk.peer_url for lk in config.links}
        self.clients = {peer: KMClient(url, context) for peer, url in self._peer_urls.items()}
        self._context = context
        self._async_clients: dict[str, AsyncKMClient] = {}
        self._flushing = self._again = False
        self.queued_through = self.sent_through = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop (set by the server at start-up)."""
        self.flushed = Broadcast()
        self._tasks: set[asyncio.Task[None]] = set()
        self._relay_queues: defaultdict[str, deque[_Waiting]] = defaultdict(deque)
        self._relay_workers: defaultdict[str, int] = defaultdict(int)
        self._cond = threading.Condition()
        self._unreachable: set[str] = set()
        self._dirty = False
        self._stop = threading.Event()
        self._started_s = clock()
        self._threads: list[threading.Thread] = []
        self._feeders: list[BaseProcess] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, *, feeders: bool = True) -> None:
        """Start the background threads (and the feeder processes)."""
        targets: list[Callable[[], None]] = [self._flush_loop, self._sync_loop]
        if self.config.controller is not None:
            agent = ControlAgent(self, self.config.controller.url, self.config.controller.period_s, self._context)
            targets.append(lambda: agent.run(self._stop))
        for target in targets:
            thread = threading.Thread(target=target, name=f"{self.kme_id}-{getattr(target, '__name__', 'control')}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        feeds = [lk for lk in self.config.links if lk.peer_store_url is None or lk.ends[0] == self.kme_id]
        if feeders and self.config_path is not None and feeds:  # the other ends' feeders run the rest
            from qnet.servers.feeder import feeder_main  # noqa: PLC0415 - the link physics: only feeders need it

            ctx = multiprocessing.get_context("spawn")
            proc = ctx.Process(target=feeder_main, args=(str(self.config_path),), name=f"feeder-{self.kme_id}",
                               daemon=True)
            proc.start()
            self._feeders.append(proc)

    def stop(self) -> None:
        """Stop threads and feeders; close connections."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        for proc in self._feeders:
            proc.terminate()
            proc.join(timeout=5)
        for client in self.clients.values():
            client.close()
        self.store.close()
        if self.audit is not None:
            self.audit.close()

    # -- key relay ---------------------------------------------------------------------------------------

    def route_to(self, node: str) -> list[str]:
        """A relay route from here to ``node`` around unreachable peers and recent failures.

        Raises:
            NoRouteError: if the policy or the failures leave none.
        """
        now = self.clock()
        states = dict(self.control_states)
        states |= {lk.link_id: LinkState(up=False) for lk in self.config.links
                   if lk.peer in self._unreachable or lk.link_id in self.manager.out_of_service}
        held = self.hold_down.held(now)
        states |= {name: LinkState(up=False) for name in held}
        avoid = held + sorted(self.drained)
        pinned = self.session_routes.get(node)
        if pinned and not set(pinned[1:-1]) & set(avoid) and self.router.usable(pinned, states):
            return list(pinned)
        return self.router.route(self.kme_id, node, states, avoid_nodes=avoid)

    async def relay_keys(self, plan: EncPlan) -> list[DeliveredKey]:
        """Relay ``plan``'s keys to its target; the master's keys once the target has stored them.

        Requests for the same target are coalesced: while a relay to it is in flight, new ones
        queue, and the next relay carries the queue in one message (up to ``RELAY_BATCH_UNITS``):
        one signature and one round trip per hop for all, where each used to pay its own four.
        The batch succeeds or fails whole, so no master holds a key its slave cannot get.

        Raises:
            UnavailableError: if no route works (each try's failure is named), or the pool is short.
        """
        waiting = _Waiting(plan, asyncio.get_running_loop().create_future())
        self._relay_queues[plan.target].append(waiting)
        if self._relay_workers[plan.target] < RELAY_IN_FLIGHT:
            self._relay_workers[plan.target] += 1
            self._spawn(self._relay_worker(plan.target))
        return await waiting.done

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task on the running loop, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay_worker(self, target: str) -> None:
        """Relay the queue for ``target`` batch after batch until it is empty."""
        queue = self._relay_queues[target]
        try:
            while batch := _next_batch(queue, self.manager.unit_bits):
                await self._relay_batch(target, batch)
        finally:
            self._relay_workers[target] -= 1

    async def _relay_batch(self, target: str, batch: list[_Waiting]) -> None:
        """Relay one batch and answer each request in it; a batch the first hop's pool cannot serve
        whole is split in halves, so requests that fit alone are still served."""
        try:
            results = await self._relay_tries(target, [w.plan for w in batch])
        except InsufficientKeyError as exc:
            if len(batch) == 1:
                batch[0].fail(UnavailableError(exc.message, exc.details))
                return
            for part in split(batch):
                await self._relay_batch(target, part)
            return
        except Exception as exc:  # a QNetError, or a bug: every request of the batch fails alike
            for waiting in batch:
                waiting.fail(exc)
            return
        for waiting, keys in zip(batch, results, strict=True):
            if not waiting.done.done():
                waiting.done.set_result(keys)

    async def _relay_tries(self, target: str, plans: list[EncPlan]) -> list[list[DeliveredKey]]:
        """Relay ``plans`` in one message per hop, retried on another route (``RELAY_TRIES``).

        Raises:
            InsufficientKeyError: if the first hop's pool is short for them all.
            UnavailableError: if no route works (each try's failure is named).
        """
        requests = [RelayRequest(p.master, tuple(p.slaves), p.number, p.size) for p in plans]
        failures: list[str] = []
        for _ in range(RELAY_TRIES):
            try:
                route = self.route_to(target)
            except NoRouteError as exc:
                failures.append(str(exc))
                break
            try:
                keys, hop = self.manager.relay_start(requests, route)
            except StoreError as exc:
                if isinstance(exc, InsufficientKeyError):
                    raise  # the caller may split the batch
                raise UnavailableError(exc.message, exc.details) from None
            try:
                await self.send_async(str(hop.next_node), hop.body)
                self._audit_relayed(plans, keys, route, str(hop.body["link_id"]))
                return keys
            except PeerError as exc:
                failed = self._relay_failed(str(hop.next_node), exc)
                failures.append(f"{' -> '.join(route)}: {exc}")
                self.manager.event(KMEEvent.RELAY_REROUTE,
                                   f"relay to {target} failed at {failed}; trying another route")
        raise UnavailableError(f"key relay to {target} failed", [{"try": f} for f in failures])

    def _audit_relayed(self, plans: list[EncPlan], keys: list[list[DeliveredKey]], route: list[str],
                       link_id: str) -> None:
        """Record relayed keys going to their masters (``link_id``: the first hop's)."""
        if self.audit is None:
            return
        with _audit_or_503():
            self.audit.log.append([record for plan, mine in zip(plans, keys, strict=True)
                                   for record in self.audit.enc_records(
                                       [k.key_ID for k in mine], master=plan.master, slaves=plan.slaves,
                                       size_bits=plan.size, route=route, link_id=link_id)])

    async def relay_hop(self, opened: Opened) -> dict[str, Any]:
        """Apply a relay message and pass it on; the reply comes back once the last node stored it.

        Raises:
            PeerError: naming the failed node or link, if a later hop failed.
        """
        step = self.manager.relay_step(opened)
        if step.next_node is None:
            if self.audit is not None:
                with _audit_or_503():
                    self.audit.relay_stored(step.body)
            return {"ok": True, "stored": len(step.key_ids), "at": self.kme_id}
        try:
            return await self.send_async(step.next_node, step.body)
        except PeerError as exc:
            failed = self._relay_failed(step.next_node, exc)
            raise PeerError(f"relay failed at {failed}: {exc}", 503, {"failed": failed}) from None

    def _relay_failed(self, next_node: str, exc: PeerError) -> str:
        """Note what failed (a node or link further on, else the next node) and hold it down."""
        failed = failed_element(next_node, exc.body)
        if exc.peer_status is None:
            self._reachable(next_node, False, str(exc))
        self.hold_down.hold(failed, self.clock())
        return failed

    async def send_async(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign ``body`` and deliver it to ``peer`` from the event loop.

        Raises:
            PeerError: if the peer is unreachable or refuses it.
        """
        envelope = seal(body, sender=self.kme_id, receiver=peer, key=self.signing_key, now_s=self.clock())
        return await self._async_client(peer).send(envelope)

    async def keep_warm(self) -> None:
        """Every :data:`WARM_PERIOD_S`, ping each peer from the event loop, so a relay over any link
        finds its connection open (TLS handshakes cost tenths of a second on a busy machine)."""
        while True:
            await asyncio.gather(*(self._async_client(peer).warm() for peer in self._peer_urls))
            await asyncio.sleep(WARM_PERIOD_S)

    def _async_client(self, peer: str) -> AsyncKMClient:
        client = self._async_clients.get(peer)
        if client is None:
            client = self._async_clients[peer] = AsyncKMClient(self._peer_urls[peer], self._context)
        return client

    def connect_peer(self, peer: str, client: AsyncKMClient) -> None:
        """Reach ``peer`` through ``client`` from the event loop (in-process tests hand it an
        ``httpx.ASGITransport`` to the peer's app)."""
        self._async_clients[peer] = client

    # -- KM-to-KM ----------------------------------------------------------------------------------------

    def send(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign ``body`` and deliver it to ``peer``; returns the reply.

        Raises:
            PeerError: if the peer is unreachable or refuses it.
        """
        envelope = seal(body, sender=self.kme_id, receiver=peer, key=self.signing_key, now_s=self.clock())
        return self.clients[peer].send(envelope)

    def _notify(self, peer: str, message_id: int) -> None:
        """An ``assign`` was committed: send it now, from the event loop when called on one (no
        thread hand-over), else from the flusher thread."""
        loop = _running_loop()
        if loop is None:  # a worker thread: hand over to the loop if there is one
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._notify, peer, message_id)
            else:
                with self._cond:
                    self._dirty = True
                    self._cond.notify_all()
            return
        self.queued_through = max(self.queued_through, message_id)
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        task = loop.create_task(self._flush_async())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_async(self) -> None:
        """Flush until nothing new was committed meanwhile (one flush at a time, batching)."""
        try:
            while True:
                self._again = False
                await self._flush_once_async()
                if not self._again:
                    return
        finally:
            self._flushing = False

    async def _flush_once_async(self) -> None:
        for peer, rows in self._outbox_by_peer().items():
            try:
                await self._async_client(peer).send(self._batch(peer, rows))
            except PeerError as exc:
                self._reachable(peer, False, str(exc))
                continue
            self._delivered(peer, rows)
        self.flushed.fire()

    async def assigns_sent(self, timeout_s: float = 2.0) -> None:
        """Wait until every assign message queued so far has reached its peer (or ``timeout_s``)."""
        target = self.queued_through
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.sent_through < target:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flushed.wait(), min(left, 0.1))

    def _delivered(self, peer: str, rows: list[tuple[int, dict[str, Any]]]) -> None:
        """The peer took these outbox messages: forget them."""
        self._reachable(peer, True)
        ids = [row_id for row_id, _ in rows]
        self.store.outbox_done(ids)
        self.sent_through = max(self.sent_through, *ids)

    def _outbox_by_peer(self, before_s: float | None = None) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        by_peer: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for row_id, peer, body in self.store.outbox(before_s=before_s):
            by_peer[peer].append((row_id, body))
        return by_peer

    def _batch(self, peer: str, rows: list[tuple[int, dict[str, Any]]]) -> bytes:
        body = {"type": KMMessage.BATCH, "link_id": self.manager.links[peer][0].link_id,
                "messages": [b for _, b in rows]}
        return seal(body, sender=self.kme_id, receiver=peer, key=self.signing_key, now_s=self.clock())

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stop.is_set(), 0.5)
                self._dirty = False
            self._flush_once()

    def _reachable(self, peer: str, ok: bool, why: str = "") -> None:
        """Track whether ``peer`` answers; an event on each change."""
        if ok and peer in self._unreachable:
            self._unreachable.discard(peer)
            if self.clock() - self._started_s > STARTUP_GRACE_S:
                self.manager.event(KMEEvent.PEER_REACHABLE, f"{peer} answers again")
        elif not ok and peer not in self._unreachable:
            self._unreachable.add(peer)
            if self.clock() - self._started_s > STARTUP_GRACE_S:  # peers starting together: no alarm
                self.manager.event(KMEEvent.PEER_UNREACHABLE, f"{peer}: {why}")

    def _flush_once(self) -> None:
        """Send queued messages older than a second, one batch per peer: the retry after an outage or
        a restart (fresh ones are the event loop's)."""
        for peer, rows in self._outbox_by_peer(self.clock() - 1.0).items():
            try:
                self.clients[peer].send(self._batch(peer, rows))
            except PeerError as exc:
                self._reachable(peer, False, str(exc))
                continue
            self._delivered(peer, rows)

    def _sync_loop(self) -> None:
        last_expiry = last_checkpoint = 0.0
        while not self._stop.wait(SYNC_PERIOD_S):
            for link in self.manager.by_id.values():
                self._sync_with(link.peer, link.link_id)
            if self.clock() - last_checkpoint > CHECKPOINT_PERIOD_S:
                last_checkpoint = self.clock()
                self.store.checkpoint()
            if self.clock() - last_expiry > EXPIRY_PERIOD_S:
                last_expiry = self.clock()
                self.store.expire(last_expiry)
                self.manager.check_pools({lk.link_id: lk.low_water_units for lk in self.config.links
                                          if lk.low_water_units and self.clock() - self._started_s > STARTUP_GRACE_S})

    def _sync_with(self, peer: str, link_id: str) -> None:
        offer = self.manager.sync_offer(link_id)
        if offer is None and peer not in self._unreachable:
            return
        offer = offer or {"type": KMMessage.SYNC, "link_id": link_id, "offered": []}  # a probe
        try:
            answer = self.send(peer, offer)
        except PeerError as exc:
            self._reachable(peer, False, str(exc))
            return
        self._reachable(peer, True)
        self.manager.sync_answered(link_id, offer, answer)
