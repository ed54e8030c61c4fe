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

Two nodes may share several QKD links (the Tokyo QKD Network had three between Koganei and
Otemachi): each link keeps its own units and synchronisation, and a key for the pair comes from
the link with the most key in store.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qnet.keys import relay
from qnet.keys.store import DeliveredKey, KeyStore, StoreError
from qnet.security.envelope import WINDOW_S, EnvelopeError, Opened

__all__ = ["Event", "KeyManager", "LinkInfo"]

log = logging.getLogger("qnet.keys")

SYNC_GRACE_S = 30.0
"""How long a unit may wait for its twin at the other end before sync discards it."""


@dataclass(frozen=True)
class LinkInfo:
    """A QKD link from this key manager to a peer's."""

    link_id: str
    peer: str
    ends: tuple[str, str]


@dataclass(frozen=True)
class Event:
    """Something an operator should hear about (no key material)."""

    time_s: float
    kind: str
    detail: str


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
        self.peer_ok: Callable[[str], bool] = lambda peer: True
        self.out_of_service: set[str] = set()
        """link_ids the controller took out of service (cut): no keys are served or relayed over them."""
        self._low: set[str] = set()
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
            NotEnoughKey: if the pool is short.
            StoreError: if the peer KME is unreachable (nothing is taken).
        """
        peer = self._remote[slaves[0]]
        link = self.best_link(peer)
        if not self.peer_ok(peer):
            raise StoreError(f"the peer KME {peer} is unreachable: keys handed out now could not reach the "
                             "slave", [{"peer_KME_ID": peer}])

        def message(groups: list[dict[str, Any]]) -> dict[str, Any]:
            return {"type": "assign", "link_id": link.link_id, "master": master, "slaves": list(slaves),
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
        if kind in ("assign", "batch"):
            subs = msg.body.get("messages", []) if kind == "batch" else [msg.body]
            with self.store.transaction() as conn:
                if not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
                for sub in subs:
                    sub_link = self.by_id.get(str(sub.get("link_id")))
                    if sub.get("type") != "assign" or sub_link is None or sub_link.peer != msg.sender:
                        raise EnvelopeError("a batch holds only assign messages of links with its sender")
                    self.store.assign(conn, msg.sender, sub["groups"], sub["master"], sub["slaves"])
            self.assigned()
            return {"ok": True, "applied": len(subs)}
        if kind == "sync":
            with self.store.transaction() as conn:
                if not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
            answer = self.store.check_offer(link.link_id, msg.body["offered"], SYNC_GRACE_S, self.clock())
            if answer["discarded"] or not answer["in_order"]:
                self.event("sync-mismatch", f"link {link.link_id}: {len(answer['discarded'])} unit(s) discarded, "
                                            f"order {'kept' if answer['in_order'] else 'differs'}")
            return answer
        raise EnvelopeError(f"unknown message type {kind!r}")

    # -- key relay -------------------------------------------------------------------------------------

    def relay_start(self, requests: Sequence[relay.RelayRequest],
                    route: Sequence[str]) -> tuple[list[list[DeliveredKey]], relay.RelayHop]:
        """Spend the first hop's key for the ``requests`` relayed together along ``route`` (this node
        first), in one message; each request's keys go to its master once the message has reached
        the last node.

        Raises:
            NotEnoughKey: if the first hop's pool is short for all of them; nothing is taken.
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
            raise StoreError("malformed relay message") from None
        try:
            out_link = self.best_link(nxt).link_id if nxt in self.links else None
            with self.store.transaction() as conn:
                if not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
                try:
                    step = relay.forward(self.store, conn, msg.sender, msg.body, out_link=out_link,
                                         unit_bits=self.unit_bits, now_s=self.clock())
                except (KeyError, TypeError, ValueError) as exc:
                    raise StoreError(f"malformed relay message: {exc}") from None
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
        """The next sync message for a link's peer, or None when every unit is confirmed."""
        link = self.by_id[link_id]
        offered = self.store.unconfirmed(link.link_id)
        return {"type": "sync", "link_id": link.link_id, "offered": offered} if offered else None

    def sync_answered(self, link_id: str, offer: dict[str, Any], answer: dict[str, Any]) -> int:
        """Apply the peer's answer to our offer; returns how many units became servable."""
        link = self.by_id[link_id]
        if not answer.get("in_order", True):
            self.event("sync-mismatch", f"link {link.link_id}: the peer holds the units in another order; "
                                        "serving in this end's order, the peer assigns by key_ID")
        dropped = self.store.apply_answer(link.link_id, offer["offered"], answer.get("held", []), SYNC_GRACE_S,
                                          self.clock())
        if dropped:
            self.event("sync-mismatch", f"link {link.link_id}: {len(dropped)} unit(s) the peer never got, discarded")
        return len(answer.get("held", []))

    def check_pools(self, low_water: Mapping[str, int]) -> None:
        """Raise ``pool-low`` when a link's servable units fall below its threshold (link_id -> units),
        and ``pool-ok`` when they are back above it; once per crossing."""
        for link_id, threshold in low_water.items():
            stock = self.store.stock(link_id)
            if stock < threshold and link_id not in self._low:
                self._low.add(link_id)
                self.event("pool-low", f"link {link_id}: {stock} units, threshold {threshold}")
            elif stock >= threshold and link_id in self._low:
                self._low.discard(link_id)
                self.event("pool-ok", f"link {link_id}: {stock} units")

    def event(self, kind: str, detail: str) -> None:
        """Record (and log) an event for the operator."""
        self.events.append(Event(self.clock(), kind, detail))
        log.warning("%s: %s", kind, detail)

    def refuse(self, reason: str) -> None:
        """Record a refused KM-to-KM message (forged, tampered, replayed, stale)."""
        self.event("km-message-refused", reason)

