"""One key manager's traffic with its peers, as decisions: whether each peer answers, which queued
messages go to whom and when, and each link's synchronisation round (ITU-T Y.3803 key
synchronisation, sec. 8).

- :class:`Peers`: which peer key managers answer; an event for the operator on each change (after a
  start-up grace, so that peers starting together raise no alarm). While a peer does not answer,
  ``enc_keys`` for its SAEs is refused (:meth:`KeyManager.enc_keys` asks ``peer_ok``) and relays
  route around its links.
- :class:`Outbox`: the ``assign`` and ``cede`` messages committed in the store's outbox, batched per
  peer in one ``batch`` message; what a peer took is forgotten, what it did not stays for the next
  flush (fresh ones at once, older ones by a periodic retry after an outage or a restart).
- :class:`Synchroniser`: each link's ``sync`` offer (or a probe of a silent peer) and its answer;
  the store's checkpoints, expiry of old units and the pool-low alarms on their periods.

Pure logic with the clock and the transport passed in: ``send(peer, body)`` delivers one message
body and returns the peer's answer, or raises :class:`~qnet.errors.PeerError`. The KME server
(:mod:`qnet.servers.node`) signs the bodies and sends them over HTTPS, from its event loop or a
thread; ``qnet simulate`` calls the peer's key manager in the same process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from qnet.errors import PeerError
from qnet.keys.events import KMEEvent, KMMessage
from qnet.keys.manager import KeyManager

__all__ = ["CHECKPOINT_PERIOD_S", "EXPIRY_PERIOD_S", "RETRY_AFTER_S", "STARTUP_GRACE_S", "Outbox", "Peers",
           "Synchroniser"]

STARTUP_GRACE_S = 10.0
"""Peers starting together: no reachability events (nor pool-low alarms) this long after the start."""
RETRY_AFTER_S = 1.0
"""The periodic flush sends outbox messages older than this (fresh ones are sent as they commit)."""
CHECKPOINT_PERIOD_S = 1.0
EXPIRY_PERIOD_S = 10.0

Send = Callable[[str, dict[str, Any]], dict[str, Any]]
"""Deliver a message body to a peer and return its answer (raises PeerError)."""
AsyncSend = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class Peers:
    """Which peers answer, as this key manager last saw them.

    Args:
        manager: the key manager (its ``peer_ok`` is set to :meth:`ok`; events go to it).
        clock: seconds.
        grace_s: no events this long after the start.
    """

    def __init__(self, manager: KeyManager, *, clock: Callable[[], float], grace_s: float = STARTUP_GRACE_S) -> None:
        self.manager, self.clock, self.grace_s = manager, clock, grace_s
        self.unreachable: set[str] = set()
        self.started_s = clock()
        manager.peer_ok = self.ok

    def ok(self, peer: str) -> bool:
        """Whether ``peer`` answered last time."""
        return peer not in self.unreachable

    @property
    def settled(self) -> bool:
        """Whether the start-up grace is over."""
        return self.clock() - self.started_s > self.grace_s

    def mark(self, peer: str, ok: bool, why: str = "") -> None:
        """``peer`` answered (``ok``) or did not (``why``); an event on each change."""
        if ok and peer in self.unreachable:
            self.unreachable.discard(peer)
            if self.settled:
                self.manager.event(KMEEvent.PEER_REACHABLE, f"{peer} answers again")
        elif not ok and peer not in self.unreachable:
            self.unreachable.add(peer)
            if self.settled:
                self.manager.event(KMEEvent.PEER_UNREACHABLE, f"{peer}: {why}")

    def result(self, peer: str, exc: PeerError | None) -> None:
        """What a send to ``peer`` says of it: no error, it is up; any error (a refusal too: the
        message stays undelivered), it is not."""
        self.mark(peer, exc is None, str(exc or ""))


_Rows = list[tuple[int, dict[str, Any]]]


class Outbox:
    """The store's outbox, flushed to the peers one ``batch`` message per peer.

    ``queued_through`` and ``sent_through`` are the highest outbox ids queued and delivered, so a
    caller can wait until what it committed has reached the peer (the ETSI 014 ``enc_keys`` answer
    leaves once its ``assign`` has)."""

    def __init__(self, manager: KeyManager, peers: Peers) -> None:
        self.manager, self.peers = manager, peers
        self.queued_through = self.sent_through = 0

    def queued(self, message_id: int) -> None:
        """An outbox message ``message_id`` was committed."""
        self.queued_through = max(self.queued_through, message_id)

    def batches(self, before_s: float | None = None) -> list[tuple[str, dict[str, Any], list[int]]]:
        """(peer, body, outbox ids) for each peer with queued messages (older than ``before_s`` if
        given), in the order they were committed."""
        by_peer: defaultdict[str, _Rows] = defaultdict(list)
        for row_id, peer, body in self.manager.store.outbox(before_s=before_s):
            by_peer[peer].append((row_id, body))
        return [(peer, {"type": KMMessage.BATCH, "link_id": self.manager.links[peer][0].link_id,
                        "messages": [b for _, b in rows]}, [i for i, _ in rows]) for peer, rows in by_peer.items()]

    def done(self, peer: str, ids: list[int], exc: PeerError | None) -> None:
        """The outcome of sending a batch: delivered (forgotten here) or not (kept for the retry)."""
        self.peers.result(peer, exc)
        if exc is None:
            self.manager.store.outbox_done(ids)
            self.sent_through = max(self.sent_through, *ids)

    def flush(self, send: Send, *, retry: bool = False) -> None:
        """Send every peer its batch (``retry``: only messages older than :data:`RETRY_AFTER_S`)."""
        before = self.manager.clock() - RETRY_AFTER_S if retry else None
        for peer, body, ids in self.batches(before):
            try:
                send(peer, body)
            except PeerError as exc:
                self.done(peer, ids, exc)
                continue
            self.done(peer, ids, None)

    async def flush_async(self, send: AsyncSend) -> None:
        """:meth:`flush` from an event loop."""
        for peer, body, ids in self.batches():
            try:
                await send(peer, body)
            except PeerError as exc:
                self.done(peer, ids, exc)
                continue
            self.done(peer, ids, None)


class Synchroniser:
    """Each link's synchronisation round, and the store's upkeep on its periods.

    Args:
        manager: the key manager.
        peers: which peers answer (a silent peer is probed every round).
        low_water: link_id -> units under which its pool is low (alarms).
    """

    def __init__(self, manager: KeyManager, peers: Peers, low_water: Mapping[str, int] | None = None) -> None:
        self.manager, self.peers, self.low_water = manager, peers, dict(low_water or {})
        self._checkpoint_s = self._expiry_s = -float("inf")

    def round(self, send: Send) -> int:
        """Offer each link's unconfirmed units to its peer (a probe if there are none and the peer
        was silent) and apply the answers; returns the units that became servable."""
        servable = 0
        for link in self.manager.by_id.values():
            offer = self.manager.sync_offer(link.link_id)
            if offer is None and self.peers.ok(link.peer):
                continue
            offer = offer or {"type": KMMessage.SYNC, "link_id": link.link_id, "offered": []}
            try:
                answer = send(link.peer, offer)
            except PeerError as exc:
                self.peers.result(link.peer, exc)
                continue
            self.peers.result(link.peer, None)
            servable += self.manager.sync_answered(link.link_id, offer, answer)
        return servable

    def upkeep(self) -> None:
        """Checkpoint the store every :data:`CHECKPOINT_PERIOD_S`; every :data:`EXPIRY_PERIOD_S`
        erase expired units and check the pools against their low-water marks."""
        now, store = self.manager.clock(), self.manager.store
        if now - self._checkpoint_s > CHECKPOINT_PERIOD_S:
            self._checkpoint_s = now
            store.checkpoint()
        if now - self._expiry_s > EXPIRY_PERIOD_S:
            self._expiry_s = now
            store.expire(now)
            if self.peers.settled:
                self.manager.check_pools({lid: n for lid, n in self.low_water.items() if n})
