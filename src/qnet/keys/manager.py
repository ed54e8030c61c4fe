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
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
        links: its links, one per peer.
        local_saes: SAE_IDs attached to this node.
        remote_saes: SAE_ID -> node for SAEs at peers.
        unit_bits: size of the units the links deliver.
        clock: wall-clock seconds.
    """

    def __init__(self, store: KeyStore, links: Sequence[LinkInfo], local_saes: Sequence[str],
                 remote_saes: Mapping[str, str], *, unit_bits: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.kme_id, self.unit_bits, self.clock = store, store.kme_id, unit_bits, clock
        self.links = {link.peer: link for link in links}
        self._local, self._remote = frozenset(local_saes), dict(remote_saes)
        self.events: deque[Event] = deque(maxlen=1000)
        self.peer_ok: Callable[[str], bool] = lambda peer: True
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

    def stock_for(self, peer: str) -> int:
        """Units this KME can hand to masters on its link to ``peer``."""
        return self.store.stock(self.links[peer].link_id)

    def enc_keys(self, master: str, slaves: Sequence[str], number: int, size: int) -> list[DeliveredKey]:
        """Hand keys to a master SAE. The ``assign`` message for the peer is committed with them and
        sent at once (``notify_peer``); the slave's request waits for it if it gets there first.

        Raises:
            NotEnoughKey: if the pool is short.
            StoreError: if the peer KME is unreachable (nothing is taken).
        """
        peer = self._remote[slaves[0]]
        link = self.links[peer]
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
        link = self.links.get(msg.sender)
        kind = msg.body.get("type")
        if link is None or msg.body.get("link_id") != link.link_id:
            raise EnvelopeError(f"no link {msg.body.get('link_id')!r} with {msg.sender!r}")
        if kind in ("assign", "batch"):
            subs = msg.body.get("messages", []) if kind == "batch" else [msg.body]
            with self.store.transaction() as conn:
                if not self.store.record_nonce(conn, msg.sender, msg.nonce, msg.time_s + 2 * WINDOW_S):
                    raise EnvelopeError(f"replayed message from {msg.sender!r}")
                for sub in subs:
                    if sub.get("type") != "assign" or sub.get("link_id") != link.link_id:
                        raise EnvelopeError("a batch holds only assign messages of this link")
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

    # -- what this end sends ---------------------------------------------------------------------------

    def sync_offer(self, peer: str) -> dict[str, Any] | None:
        """The next sync message for ``peer``, or None when every unit is confirmed."""
        link = self.links[peer]
        offered = self.store.unconfirmed(link.link_id)
        return {"type": "sync", "link_id": link.link_id, "offered": offered} if offered else None

    def sync_answered(self, peer: str, offer: dict[str, Any], answer: dict[str, Any]) -> int:
        """Apply the peer's answer to our offer; returns how many units became servable."""
        link = self.links[peer]
        if not answer.get("in_order", True):
            self.event("sync-mismatch", f"link {link.link_id}: the peer holds the units in another order; "
                                        "serving in this end's order, the peer assigns by key_ID")
        dropped = self.store.apply_answer(link.link_id, offer["offered"], answer.get("held", []), SYNC_GRACE_S,
                                          self.clock())
        if dropped:
            self.event("sync-mismatch", f"link {link.link_id}: {len(dropped)} unit(s) the peer never got, discarded")
        return len(answer.get("held", []))

    def check_pools(self, low_water: Mapping[str, int]) -> None:
        """Raise ``pool-low`` when a link's servable units fall below its threshold (peer -> units),
        and ``pool-ok`` when they are back above it; once per crossing."""
        for peer, threshold in low_water.items():
            stock = self.stock_for(peer)
            if stock < threshold and peer not in self._low:
                self._low.add(peer)
                self.event("pool-low", f"link {self.links[peer].link_id}: {stock} units, threshold {threshold}")
            elif stock >= threshold and peer in self._low:
                self._low.discard(peer)
                self.event("pool-ok", f"link {self.links[peer].link_id}: {stock} units")

    def event(self, kind: str, detail: str) -> None:
        """Record (and log) an event for the operator."""
        self.events.append(Event(self.clock(), kind, detail))
        log.warning("%s: %s", kind, detail)

    def refuse(self, reason: str) -> None:
        """Record a refused KM-to-KM message (forged, tampered, replayed, stale)."""
        self.event("km-message-refused", reason)

