"""The running key manager of one node: the key management layer's objects (``qnet.keys``) driven
over HTTPS, an event loop, threads and processes. This module decides nothing about keys; it adapts:

- :class:`~qnet.keys.relayer.Relayer` (route, coalescing, split, retries, forwarding) runs on the
  server's event loop, its messages signed and posted by :meth:`KMENode.send_async`;
- :class:`~qnet.keys.peers.Outbox`: committed ``assign`` and ``cede`` messages are flushed from the
  event loop as soon as they commit, and retried by the **outbox flusher** thread after an outage or
  a restart; while a peer is unreachable (:class:`~qnet.keys.peers.Peers`), ``enc_keys`` for it
  answers 503 instead of handing out keys its slave cannot get;
- :class:`~qnet.keys.peers.Synchroniser`: the **synchroniser** thread runs each link's sync round
  and the store's upkeep;
- a feeder (one child process for all the node's links, ``qnet.servers.feeder``) fills the store;
- the control agent (``qnet.servers.agent``) reports to the controller and hands its picture to
  the relay's routing.

Every key handed out (to a master, to a slave) and every relayed key stored here for its slaves is
recorded in the node's audit log (``qnet.management.audit``, ``audit/NODE.jsonl`` beside the
configuration) before it leaves: :class:`_AuditedService` and the relayer's two hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from qnet.clients.controller import AsyncSessionClient
from qnet.clients.km import AsyncKMClient, KMClient, tls_client_context
from qnet.control.kme_view import KMEControlView
from qnet.control.routing import LinkState, RelayRouting, RoutePolicy, Router, Topology
from qnet.errors import PeerError, QNetError, UnavailableError
from qnet.keys.events import KMMessage
from qnet.keys.manager import KeyManager, LinkInfo
from qnet.keys.peers import Outbox, Peers, Synchroniser
from qnet.keys.relay import RelayRequest
from qnet.keys.relayer import Relayer, Waiting
from qnet.keys.store import DeliveredKey, KeyStore
from qnet.management.audit import AuditError, AuditLog, KeySupplyAudit, audit_path
from qnet.management.audit_anchor import ANCHOR_PERIOD_S, Anchoring, keep_peer_anchor
from qnet.security.envelope import EnvelopeError, Opened, seal
from qnet.security.pki import load_signing_key, load_verify_key
from qnet.servers.agent import ControlAgent
from qnet.servers.config import KMEConfig
from qnet.service.etsi004 import StreamBook
from qnet.service.etsi014 import EncPlan, ETSI014Service, KeyManagerLike

__all__ = ["Broadcast", "KMENode"]

log = logging.getLogger("qnet.kme")

SYNC_PERIOD_S = 0.2
WARM_PERIOD_S = 10.0
"""How often a KME pings its peers to keep its connections to them open (under KEEPALIVE_S)."""
FLUSH_PERIOD_S = 0.5
"""How often the outbox flusher thread retries old messages."""


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
                                    route=plan.route, stream=plan.stream)
        return body

    def dec_keys(self, caller: str, master: str, key_ids: Sequence[Any], *,
                 stream: str | None = None) -> dict[str, Any]:
        body = super().dec_keys(caller, master, key_ids, stream=stream)
        if self.audit is not None:
            with _audit_or_503():
                self.audit.dec_keys(_key_ids(body), slave=caller, master=master, stream=stream)
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
        self.peers = Peers(self.manager, clock=clock)
        self.outbox = Outbox(self.manager, self.peers)
        self.synchroniser = Synchroniser(self.manager, self.peers,
                                         {lk.link_id: lk.low_water_units for lk in config.links})
        topology = Topology(tuple(net.nodes) or (config.kme_id, *self.manager.links),
                            tuple((a, b, lid) for a, b, lid in net.links) or
                            tuple((lk.ends[0], lk.ends[1], lk.link_id) for lk in config.links))
        self.routing = RelayRouting(Router(topology, RoutePolicy(net.max_hops, frozenset(net.excluded_nodes),
                                                                 net.min_key_rate_bps)))
        self.relayer = Relayer(self.manager, self.routing, self.send_async, peers=self.peers, clock=clock)
        self.control = KMEControlView(self.manager, self.routing, self.relayer, unit_bits=config.unit_bits)
        """What this KME reports to the controller and takes from its answers (the agent carries them)."""
        path = audit_path(config.kme_id, config_path, config.store_url)
        self.audit = KeySupplyAudit(AuditLog(path), config.kme_id, self.store, clock) if path else None
        self.signing_key = load_signing_key(config.signing_key)
        self.anchoring: Anchoring | None = None
        if self.audit is not None:
            self.relayer.on_relayed, self.relayer.on_stored = self._audit_relayed, self._audit_stored
            try:
                self.anchoring = Anchoring(self.audit.log, config.kme_id, self.store, self.signing_key)
            except AuditError:
                self.audit.close()
                self.store.close()
                raise
        self._anchored_at: dict[str, int] = {}  # peer -> the seq of the last anchor it took
        self._anchor_s = 0.0
        self.service = _AuditedService(self.manager, self.relayer.route_to, self.audit)
        self.key_streams: StreamBook | None = None  # the ETSI 004 streams here (set by the server app)
        self.control.usage = self.usage_report
        self.verify_keys = {lk.peer: load_verify_key(lk.peer_verify_key) for lk in config.links}
        context = tls_client_context(config.tls.ca, config.tls.cert, config.tls.key)
        self._peer_urls = {lk.peer: lk.peer_url for lk in config.links}
        self.clients = {peer: KMClient(url, context) for peer, url in self._peer_urls.items()}
        self._context = context
        self._async_clients: dict[str, AsyncKMClient] = {}
        self._flushing = self._again = False
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop (set by the server at start-up)."""
        self.flushed = Broadcast()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cond = threading.Condition()
        self._dirty = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._feeders: list[BaseProcess] = []

    # -- what the controller last said (read by the inventory) ----------------------------------------

    @property
    def control_states(self) -> dict[str, LinkState]:
        """Every link's state as the controller last reported it (empty without a controller)."""
        return self.routing.states

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """The sessions that start here, as the controller last described them."""
        return self.control.sessions

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
        """Stop threads and feeders; close connections. The audit log's head is anchored last."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        with contextlib.suppress(QNetError, OSError):
            self.anchor_audit(tell_peers=False)
        for proc in self._feeders:
            proc.terminate()
            proc.join(timeout=5)
        for client in self.clients.values():
            client.close()
        self.store.close()
        if self.audit is not None:
            self.audit.close()

    # -- key relay (the relayer's decisions, on the event loop) --------------------------------------

    def route_to(self, node: str) -> list[str]:
        """A relay route from here to ``node`` (:meth:`Relayer.route_to`)."""
        return self.relayer.route_to(node)

    async def relay_keys(self, plan: EncPlan) -> list[DeliveredKey]:
        """Relay ``plan``'s keys to its target; the master's keys once the target has stored them
        (requests for the same target are coalesced: :class:`~qnet.keys.relayer.Relayer`).

        Raises:
            UnavailableError: if no route works (each try's failure is named), or the pool is short.
        """
        answer: asyncio.Future[list[DeliveredKey]] = asyncio.get_running_loop().create_future()
        request = RelayRequest(plan.master, tuple(plan.slaves), plan.number, plan.size)
        if self.relayer.submit(plan.target, Waiting(request, answer)):
            self._spawn(self.relayer.work(plan.target))
        keys = await answer
        self.service.count_enc(plan, keys)
        return keys

    async def relay_hop(self, opened: Opened) -> dict[str, Any]:
        """Apply a relay message and pass it on (:meth:`Relayer.hop`)."""
        return await self.relayer.hop(opened)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task on the running loop, holding a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _audit_relayed(self, requests: Sequence[RelayRequest], keys: list[list[DeliveredKey]], route: list[str],
                       link_id: str) -> None:
        """Record relayed keys going to their masters (``link_id``: the first hop's)."""
        assert self.audit is not None
        with _audit_or_503():
            self.audit.log.append([record for req, mine in zip(requests, keys, strict=True)
                                   for record in self.audit.enc_records(
                                       [k.key_ID for k in mine], master=req.master, slaves=list(req.slaves),
                                       size_bits=req.size_bits, route=route, link_id=link_id)])

    def _audit_stored(self, body: dict[str, Any]) -> None:
        assert self.audit is not None
        with _audit_or_503():
            self.audit.relay_stored(body)

    # -- KM-to-KM ----------------------------------------------------------------------------------------

    async def send_async(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign ``body`` and deliver it to ``peer`` from the event loop.

        Raises:
            PeerError: if the peer is unreachable or refuses it.
        """
        envelope = seal(body, sender=self.kme_id, receiver=peer, key=self.signing_key, now_s=self.clock())
        return await self._async_client(peer).send(envelope)

    def send(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign ``body`` and deliver it to ``peer`` from a thread; returns the reply.

        Raises:
            PeerError: if the peer is unreachable or refuses it.
        """
        envelope = seal(body, sender=self.kme_id, receiver=peer, key=self.signing_key, now_s=self.clock())
        return self.clients[peer].send(envelope)

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

    def usage_report(self) -> dict[str, Any]:
        """What this KME's report says of key handed to its applications: per application, peer and
        API, and per open ETSI 004 stream."""
        streams = list(self.key_streams.streams.values()) if self.key_streams is not None else []
        return {"usage": self.service.usage.rows(), "streams": [
            {"Key_stream_ID": s.ksid, "SAE_ID": s.sae, "bits": s.key_bits_delivered} for s in streams]}

    def session_client(self) -> AsyncSessionClient | None:
        """A client of the controller's sessions (ETSI 004 streams), if this KME has a controller."""
        if self.config.controller is None:
            return None
        return AsyncSessionClient(self.config.controller.url, self._context)

    def connect_peer(self, peer: str, client: AsyncKMClient) -> None:
        """Reach ``peer`` through ``client`` from the event loop (in-process tests hand it an
        ``httpx.ASGITransport`` to the peer's app)."""
        self._async_clients[peer] = client

    def _notify(self, peer: str, message_id: int) -> None:
        """An ``assign`` or ``cede`` was committed: flush it now, from the event loop when called on
        one (no thread hand-over), else from the flusher thread."""
        loop = _running_loop()
        if loop is None:  # a worker thread: hand over to the loop if there is one
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._notify, peer, message_id)
            else:
                with self._cond:
                    self._dirty = True
                    self._cond.notify_all()
            return
        self.outbox.queued(message_id)
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        self._spawn(self._flush_async())

    async def _flush_async(self) -> None:
        """Flush until nothing new was committed meanwhile (one flush at a time, batching)."""
        try:
            while True:
                self._again = False
                await self.outbox.flush_async(self.send_async)
                self.flushed.fire()
                if not self._again:
                    return
        finally:
            self._flushing = False

    async def assigns_sent(self, timeout_s: float = 2.0) -> None:
        """Wait until every assign message queued so far has reached its peer (or ``timeout_s``)."""
        target = self.outbox.queued_through
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.outbox.sent_through < target:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flushed.wait(), min(left, 0.1))

    def _flush_loop(self) -> None:
        """The retry: messages older than a second, after an outage or a restart (fresh ones are
        the event loop's)."""
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stop.is_set(), FLUSH_PERIOD_S)
                self._dirty = False
            self.outbox.flush(self.send, retry=True)

    def _sync_loop(self) -> None:
        while not self._stop.wait(SYNC_PERIOD_S):
            self.synchroniser.round(self.send)
            self.synchroniser.upkeep()
            if self.clock() - self._anchor_s >= ANCHOR_PERIOD_S:
                self._anchor_s = self.clock()
                self.anchor_audit()

    def anchor_audit(self, *, tell_peers: bool = True) -> None:
        """Sign the audit log's head if it moved, keep it in the store, and send the newest anchor
        to each peer that has not taken it yet."""
        if self.anchoring is None:
            return
        self.anchoring.anchor(self.clock())
        newest = self.anchoring.last
        if newest is None or not tell_peers:
            return
        for peer in self.manager.links:
            if self._anchored_at.get(peer, -1) < newest.seq and self.peers.ok(peer):
                try:
                    self.send(peer, {"type": KMMessage.ANCHOR, "anchor": newest.as_dict()})
                except PeerError as exc:
                    log.info("audit anchor not taken by %s: %s", peer, exc)
                    continue
                self._anchored_at[peer] = newest.seq

    def keep_anchor(self, msg: Opened) -> dict[str, Any]:
        """A peer's audit anchor: kept in this store if signed by it and not older than the one kept.

        Raises:
            EnvelopeError: for an anchor that is not the sender's or not signed by it.
        """
        try:
            return keep_peer_anchor(self.store, msg.sender, msg.body.get("anchor"), self.verify_keys[msg.sender])
        except AuditError as exc:
            raise EnvelopeError(exc.message) from None
