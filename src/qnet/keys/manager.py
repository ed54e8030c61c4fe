"""The key manager of one node (the KMA/KSA of ITU-T Y.3803): its key store, its links to peer key
managers, which SAEs it serves, and the KM-to-KM messages that keep the two ends of a link in step.

Pure logic with the clock passed in: the live server (``qnet.servers.kme``) drives it over HTTPS;
the transport of messages (and the wait for the peer's acknowledgement) is injected.

Messages to the peer (bodies; the envelope is signed and replay-checked, ``qnet.security.envelope``):

- ``assign``: "I handed these keys (groups of units) to master SAE M for slave SAEs S": the peer
  reserves the same units for S. Queued in the outbox in the same transaction that hands the keys out.
- ``sync``: "here are my units you have not confirmed, in order": the peer answers which it holds
  and whether in the same order; held units become servable, units one end lacks are discarded at
  both ends (each end decides from the same answer), so a mismatch is repaired, never served.
- ``relay``: one hop of a key relayed through trusted nodes (:mod:`qnet.keys.relay`).
- ``cede``: "these units of mine are yours now" (queued in the outbox, sent in a ``batch``): each
  sync message and answer carries the sender's stock (the units it owns, confirmed or not), and an
  end holding more than twice the other's hands over half the difference (:func:`cede_count`), so
  what one direction of a link does not use becomes available to the other; a one-way demand gets
  the link's whole key rate.

Two nodes may share several QKD links (the Tokyo QKD Network had three between Koganei and
Otemachi): each link keeps its own units and synchronisation, and a key for the pair comes from
the link with the most key in store.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from qnet.keys import relay
from qnet.keys.events import KMEEvent, KMMessage, Repeats
from qnet.keys.store import DeliveredKey, KeyStore, MalformedMessageError, StoreError
from qnet.security.envelope import WINDOW_S, EnvelopeError, Opened

__all__ = ["Event", "KeyManager", "LinkInfo", "cede_count"]

log = logging.getLogger("qnet.keys")

SYNC_GRACE_S = 30.0
"""How long a unit may wait for its twin at the other end before sync discards it."""
PROBE_PERIOD_S = 1.0
"""With nothing to offer, a sync message still goes this often: it carries this end's stock."""
CEDE_MIN_UNITS = 64
"""No hand-over for less than this (a message per unit would cost more than it brings)."""
CEDE_MAX_UNITS = 4096
"""At most this many units per hand-over message."""
APPLY_CHUNK_UNITS = 2048
"""Units of a batch applied per transaction (SQLite has one writer: others wait behind each)."""
CEDE_PERIOD_S = 2.0
"""At most one hand-over per link in this long (the peer's stock seen meanwhile is stale)."""


def cede_count(mine: int, theirs: int) -> int:
    """How many of its servable units an end holding ``mine`` hands to a peer holding ``theirs``:
    half the difference, when it holds more than twice the peer's (and :data:`CEDE_MIN_UNITS` more);
    at most :data:`CEDE_MAX_UNITS`.

    Examples:
        >>> cede_count(1000, 0), cede_count(1000, 500), cede_count(100, 0), cede_count(10**6, 0)
        (500, 0, 50, 4096)
    """
    if mine < 2 * theirs + CEDE_MIN_UNITS:
        return 0
    return min((mine - theirs) // 2, CEDE_MAX_UNITS)


@dataclass(frozen=True)
class LinkInfo:
    """A QKD link from this key manager to a peer's."""

    link_id: str
    peer: str
    ends: tuple[str, str]


@dataclass(frozen=True)
class Event:
    """Something an operator should hear about (no key material): ``seq`` numbers a key manager's
    events from 1 (the controller takes each once, however often a report is re-sent); ``count``
    is how many occurrences it stands for (more than 1: a summary of repeats)."""

    time_s: float
    kind: KMEEvent
    detail: str
    seq: int = 0
    count: int = 1


class KeyManager:
    """One node's key manager.

    Args:
        store: its key store.
        links: its links (several may join the same peer).
        local_saes: SAE_IDs attached to this node.
        remote_saes: SAE_ID -> node, for SAEs at other nodes (peers, or further away: relayed).
        access: SAE_ID -> the SAEs it may share keys with (an SAE not named may pair with any).
        unit_bits: size of the units the links deliver.
        clock: wall-clock seconds.
    """

    def __init__(self, store: KeyStore, links: Sequence[LinkInfo], local_saes: Sequence[str],
                 remote_saes: Mapping[str, str], *, unit_bits: int = 256,
                 access: Mapping[str, Sequence[str]] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store, self.kme_id, self.unit_bits, self.clock = store, store.kme_id, unit_bits, clock
        self.by_id = {link.link_id: link for link in links}
        self.links: dict[str, list[LinkInfo]] = {}
        for link in links:
            self.links.setdefault(link.peer, []).append(link)
        self._local, self._remote = frozenset(local_saes), dict(remote_saes)
        self.access = {sae: frozenset(peers) for sae, peers in (access or {}).items()}
        self.events: deque[Event] = deque(maxlen=1000)
        self._seq = 0
        self._event_lock = threading.Lock()  # events come from the event loop and from threads
        self.boot = secrets.token_hex(8)
        """This start of the key manager (its events' ``seq`` count from 1 at each)."""
        self._repeats = Repeats()
        self.peer_ok: Callable[[str], bool] = lambda peer: True
        self.out_of_service: set[str] = set()
        """link_ids the controller took out of service (cut): no keys are served or relayed over them."""
        self._low: set[str] = set()
        self._synced: dict[str, float] = {}
        self._ceded: dict[str, float] = {}
        self.notify_peer: Callable[[str, int], None] = lambda peer, message_id: None

    # -- what the ETSI 014 service asks -------------------------------------------------------------

    def local_sae(self, sae_id: str) -> bool:
        """Whether ``sae_id`` is attached here."""
        return sae_id in self._local

    def peer_of(self, sae_id: str) -> str | None:
        """The peer KME an SAE is attached to, if this node has a link to it."""
        node = self._remote.get(sae_id)
        return node if node in self.links else None

    def node_of(self, sae_id: str) -> str | None:
        """The node an SAE is attached to (this one, a peer, or one reached by relay)."""
        return self.kme_id if sae_id in self._local else self._remote.get(sae_id)

    def peer_of_node(self, node: str) -> bool:
        """Whether this node has a QKD link in service to ``node``."""
        return any(lk.link_id not in self.out_of_service for lk in self.links.get(node, ()))

    def allowed(self, sae_a: str, sae_b: str) -> bool:
        """Access control: whether two SAEs may share keys (each one's ``peers`` list, if it has one)."""
        return all(b in self.access[a] for a, b in ((sae_a, sae_b), (sae_b, sae_a)) if a in self.access)

    def stock_for(self, peer: str) -> int:
        """Units this KME can hand to masters on its links to ``peer``."""
        return sum(self.store.stock(link.link_id) for link in self.links[peer])

    def best_link(self, peer: str) -> LinkInfo:
        """The link in service to ``peer`` with the most units this end may serve.

        Raises:
            StoreError: if every link to ``peer`` is out of service (details name them as failed).
        """
        links = [lk for lk in self.links[peer] if lk.link_id not in self.out_of_service]
        if not links:
            raise StoreError(f"every link from {self.kme_id} to {peer} is out of service (cut)",
                             [{"failed": lk.link_id} for lk in self.links[peer]])
        return links[0] if len(links) == 1 else max(links, key=lambda lk: self.store.stock(lk.link_id))

    def enc_keys(self, master: str, slaves: Sequence[str], number: int, size: int) -> list[DeliveredKey]:
        """Hand keys to a master SAE. The ``assign`` message for the peer is committed with them and
        sent at once (``notify_peer``); the slave's request waits for it if it gets there first.

        Raises:
            InsufficientKeyError: if the pool is short.
            StoreError: if the peer KME is unreachable (nothing is taken).
        """
        peer = self._remote[slaves[0]]
        link = self.best_link(peer)
        if not self.peer_ok(peer):
            raise StoreError(f"the peer KME {peer} is unreachable: keys handed out now could not reach the "
                             "slave", [{"peer_KME_ID": peer}])

        def message(groups: list[dict[str, Any]]) -> dict[str, Any]:
            return {"type": KMMessage.ASSIGN, "link_id": link.link_id, "master": master, "slaves": list(slaves),
                    "groups": groups}

        keys = self.store.take_for_master(link.link_id, number, size, self.unit_bits, master_sae=master,
                                          slaves=slaves, peer=peer, now_s=self.clock(), message=message)
        self.notify_peer(peer, self.store.last_outbox_id)
        return keys

    def dec_keys(self, slave: str, master: str, key_ids: Sequence[str]) -> list[DeliveredKey]:
        """Hand a slave SAE the keys its master was given (each once).

        Raises:
            StoreError: naming each key_ID that cannot be served; the reason ``NOT_YET_ASSIGNED``
                means the master's KME has handed it out but its message has not arrived yet: the
                caller may wait for ``assigned`` and try again.
        """
        return self.store.take_for_slave(key_ids, slave, master)

    def assigned(self) -> None:
        """Called after each applied ``assign`` message (the server wakes waiting slaves)."""

    # -- messages from the peer ----------------------------------------------------------------------

    def handle(self, msg: Opened) -> dict[str, Any]:
        """Act on a verified message from a peer; returns the reply body.

        Raises:
            EnvelopeError: if the message is a replay, from a node without a link here, or unknown.
            StoreError: if it cannot be applied (a synchronisation mismatch); nothing changes.
        """
        link = self.by_id.get(str(msg.body.get("link_id")))
        kind = msg.body.get("type")
        if link is None or link.peer != msg.sender:
            raise EnvelopeError(f"no link {msg.body.get('link_id')!r} with {msg.sender!r}")
        if kind in (KMMessage.ASSIGN, KMMessage.BATCH):
            subs = msg.body.get("messages", []) if kind == KMMessage.BATCH else [msg.body]
            self._apply_batch(msg, [(self._sub_link(msg, sub), sub) for sub in subs])
            self.assigned()
            return {"ok": True, "applied": len(subs)}
        if kind == KMMessage.SYNC:
            with self.store.transaction() as conn:
                if not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
            answer = self.store.check_offer(link.link_id, msg.body["offered"], SYNC_GRACE_S, self.clock())
            if answer["discarded"] or not answer["in_order"]:
                self.event(KMEEvent.SYNC_MISMATCH, f"link {link.link_id}: {len(answer['discarded'])} unit(s) "
                           f"discarded, order {'kept' if answer['in_order'] else 'differs'}")
            mine = self.store.owned(link.link_id)
            return {**answer, "stock": mine - self.rebalance(link.link_id, msg.body.get("stock"), mine)}
        raise EnvelopeError(f"unknown message type {kind!r}")

    def _sub_link(self, msg: Opened, sub: dict[str, Any]) -> LinkInfo:
        """The link of one message of a batch (only assign and cede, only on links with its sender).

        Raises:
            EnvelopeError: otherwise (before anything is applied).
        """
        link = self.by_id.get(str(sub.get("link_id")))
        if sub.get("type") not in (KMMessage.ASSIGN, KMMessage.CEDE) or link is None or link.peer != msg.sender:
            raise EnvelopeError("a batch holds only assign and cede messages of links with its sender")
        return link

    def _apply_batch(self, msg: Opened, subs: Sequence[tuple[LinkInfo, dict[str, Any]]]) -> None:
        """Apply a batch's assign and cede messages, :data:`APPLY_CHUNK_UNITS` units per transaction
        (the first also records the nonce), so that a large one (1024 keys of 8192 bits: 32,768
        units, seconds of SQLite's single writer) lets the other requests' transactions in between.
        Each piece is idempotent, so a batch cut short by a crash is completed by the resend.

        Raises:
            EnvelopeError: if the message is a replay (nothing changes).
            StoreError: if a piece cannot be applied (the pieces before it stay applied).
        """
        chunks = _chunks([piece for link, sub in subs for piece in _pieces(link, sub)], APPLY_CHUNK_UNITS) or [[]]
        for i, chunk in enumerate(chunks):
            with self.store.transaction() as conn:
                if i == 0 and not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
                for link, sub, _ in chunk:
                    if sub["type"] == KMMessage.CEDE:
                        self.store.take_over(conn, msg.sender, link.link_id, sub["units"])
                    else:
                        self.store.assign(conn, msg.sender, sub["groups"], sub["master"], sub["slaves"])

    # -- key relay -------------------------------------------------------------------------------------

    def relay_start(self, requests: Sequence[relay.RelayRequest],
                    route: Sequence[str]) -> tuple[list[list[DeliveredKey]], relay.RelayHop]:
        """Spend the first hop's key for the ``requests`` relayed together along ``route`` (this node
        first), in one message; each request's keys go to its master once the message has reached
        the last node.

        Raises:
            InsufficientKeyError: if the first hop's pool is short for all of them; nothing is taken.
            StoreError: if every link to the next node is out of service.
        """
        return relay.start(self.store, self.best_link(route[1]).link_id, route=route, requests=requests,
                           unit_bits=self.unit_bits, now_s=self.clock())

    def relay_step(self, msg: Opened) -> relay.RelayHop:
        """Act on a verified ``relay`` message: decrypt, then store here or re-encrypt for the next node.

        Raises:
            EnvelopeError: if it is a replay or comes over no link with the sender.
            StoreError: if it cannot be applied (nothing changes).
        """
        link = self.by_id.get(str(msg.body.get("link_id")))
        if link is None or link.peer != msg.sender:
            raise EnvelopeError(f"no link {msg.body.get('link_id')!r} with {msg.sender!r}")
        try:
            route, hop = list(msg.body["route"]), int(msg.body["hop"])
            nxt = route[hop + 1] if hop + 1 < len(route) else None
        except (KeyError, TypeError, ValueError, IndexError):
            raise MalformedMessageError("malformed relay message") from None
        try:
            out_link = self.best_link(nxt).link_id if nxt in self.links else None
            with self.store.transaction() as conn:
                if not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
                try:
                    step = relay.forward(self.store, conn, msg.sender, msg.body, out_link=out_link,
                                         unit_bits=self.unit_bits, now_s=self.clock())
                except StoreError:
                    raise  # the store's own refusal (not enough key, a unit it cannot use), with its details
                except (KeyError, TypeError, ValueError) as exc:
                    raise MalformedMessageError(f"malformed relay message: {exc}") from None
        except StoreError:
            with self.store.transaction() as conn:  # the sender spent them: so does this end; no replay
                if self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    relay.discard_incoming(conn, msg.sender, msg.body)
            raise
        if step.next_node is None:
            self.assigned()
        return step

    # -- what this end sends ---------------------------------------------------------------------------

    def sync_offer(self, link_id: str) -> dict[str, Any] | None:
        """The next sync message for a link's peer (with this end's stock), or None when every unit is
        confirmed and the last message went less than :data:`PROBE_PERIOD_S` ago."""
        link, now = self.by_id[link_id], self.clock()
        offered = self.store.unconfirmed(link.link_id)
        if not offered and now - self._synced.get(link_id, -math.inf) < PROBE_PERIOD_S:
            return None
        self._synced[link_id] = now
        return {"type": KMMessage.SYNC, "link_id": link.link_id, "offered": offered, "stock": self.store.owned(link_id)}

    def rebalance(self, link_id: str, peer_stock: object, own_stock: int | None = None) -> int:
        """Hand units of ``link_id`` over to the peer if it holds far fewer (:func:`cede_count`);
        ``peer_stock`` as the peer last said (ignored unless an int), ``own_stock`` this end's
        (:meth:`KeyStore.owned`, counted here if None). Returns the units handed over."""
        now, link = self.clock(), self.by_id[link_id]
        if not isinstance(peer_stock, int) or now - self._ceded.get(link_id, -math.inf) < CEDE_PERIOD_S:
            return 0
        count = cede_count(self.store.owned(link_id) if own_stock is None else own_stock, peer_stock)
        if not count or link_id in self.out_of_service:
            return 0
        self._ceded[link_id] = now
        ceded = self.store.cede(link_id, link.peer, count, now,
                                lambda ids: {"type": KMMessage.CEDE, "link_id": link_id, "units": ids})
        if ceded:
            self.notify_peer(link.peer, self.store.last_outbox_id)
        return ceded

    def sync_answered(self, link_id: str, offer: dict[str, Any], answer: dict[str, Any]) -> int:
        """Apply the peer's answer to our offer; returns how many units became servable."""
        link = self.by_id[link_id]
        if not answer.get("in_order", True):
            self.event(KMEEvent.SYNC_MISMATCH, f"link {link.link_id}: the peer holds the units in another order; "
                                        "serving in this end's order, the peer assigns by key_ID")
        dropped = self.store.apply_answer(link.link_id, offer["offered"], answer.get("held", []), SYNC_GRACE_S,
                                          self.clock())
        if dropped:
            self.event(KMEEvent.SYNC_MISMATCH,
                       f"link {link.link_id}: {len(dropped)} unit(s) the peer never got, discarded")
        own = offer.get("stock")  # counted when the offer was made, a round trip ago
        self.rebalance(link_id, answer.get("stock"), own if isinstance(own, int) else None)
        return len(answer.get("held", []))

    def check_pools(self, low_water: Mapping[str, int]) -> None:
        """Raise ``pool-low`` when a link's servable units fall below its threshold (link_id -> units),
        and ``pool-ok`` when they are back above it; once per crossing."""
        for link_id, threshold in low_water.items():
            stock = self.store.stock(link_id)
            if stock < threshold and link_id not in self._low:
                self._low.add(link_id)
                self.event(KMEEvent.POOL_LOW, f"link {link_id}: {stock} units, threshold {threshold}")
            elif stock >= threshold and link_id in self._low:
                self._low.discard(link_id)
                self.event(KMEEvent.POOL_OK, f"link {link_id}: {stock} units")

    def event(self, kind: KMEEvent, detail: str, *, place: str | None = None) -> None:
        """Record (and log) an event for the operator; repeats of ``kind`` at ``place`` (the same
        detail when None) within :data:`~qnet.keys.events.REPEAT_WINDOW_S` are counted and told in
        one summary (:class:`~qnet.keys.events.Repeats`)."""
        now = self.clock()
        with self._event_lock:
            self._summarise(now)
            if self._repeats.admit((kind, detail if place is None else place), now):
                self._record(now, kind, detail, 1)

    def summarise_repeats(self, now: float) -> None:
        """One event for each kind and place whose repeats' window has ended."""
        with self._event_lock:
            self._summarise(now)

    def _summarise(self, now: float) -> None:
        for summary in self._repeats.due(now):
            kind, place = cast(tuple[KMEEvent, str], summary.key)
            self._record(now, kind, f"{summary.count} more {kind} ({place}) in the last {now - summary.since_s:.0f} s; "
                                    "repeats are counted, not each told", summary.count)

    def _record(self, now: float, kind: KMEEvent, detail: str, count: int) -> None:
        self._seq += 1
        self.events.append(Event(now, kind, detail, self._seq, count))
        log.warning("%s: %s", kind, detail)

    def refuse(self, reason: str, sender: str | None = None) -> None:
        """Record a refused KM-to-KM message (forged, tampered, replayed, stale) from ``sender``
        (its TLS identity); repeats from one sender are counted, not each told."""
        self.event(KMEEvent.KM_MESSAGE_REFUSED, f"{reason} (from {sender})" if sender else reason,
                   place=f"from {sender}" if sender else "unknown sender")


def _key_ids(value: object) -> list[str]:
    """A message's list of key_IDs.

    Raises:
        StoreError: if it is not a list of strings.
    """
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise MalformedMessageError("malformed cede message: units must be a list of key_IDs")
    return value


_Piece = tuple[LinkInfo, dict[str, Any], int]
"""(link, part of a message, its units)."""


def _pieces(link: LinkInfo, sub: dict[str, Any]) -> list[_Piece]:
    """A batch message cut into parts of at most :data:`APPLY_CHUNK_UNITS` units (whole keys).

    Raises:
        StoreError: if it is malformed.
    """
    if sub["type"] == KMMessage.CEDE:
        ids = _key_ids(sub.get("units"))
        return [(link, {**sub, "units": ids[i:i + APPLY_CHUNK_UNITS]}, len(ids[i:i + APPLY_CHUNK_UNITS]))
                for i in range(0, len(ids), APPLY_CHUNK_UNITS)]
    try:
        groups = list(sub["groups"])
        sizes = [len(g["units"]) for g in groups]
    except (KeyError, TypeError) as exc:
        raise MalformedMessageError(f"malformed assign message: {exc}") from None
    out: list[_Piece] = []
    start = units = 0
    for i, size in enumerate(sizes):
        if units and units + size > APPLY_CHUNK_UNITS:
            out.append((link, {**sub, "groups": groups[start:i]}, units))
            start, units = i, 0
        units += size
    return [*out, (link, {**sub, "groups": groups[start:]}, units)]


def _chunks(pieces: list[_Piece], limit: int) -> list[list[_Piece]]:
    """Pieces packed into transactions of at most ``limit`` units (a larger piece alone)."""
    chunks: list[list[_Piece]] = []
    units = limit
    for piece in pieces:
        if units + piece[2] > limit:
            chunks.append([])
            units = 0
        chunks[-1].append(piece)
        units += piece[2]
    return chunks
