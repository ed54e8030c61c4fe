"""Key relay through trusted nodes (ITU-T Y.3803 sec. 8, "key relay"): a key for SAEs at two key
managers without a QKD link between them is carried hop by hop along a route of trusted nodes.

The relayed key K is the first hop's QKD key (as in the Tokyo QKD Network; Sasaki et al., Opt.
Express 19, 10387 (2011)). On every further hop the sending node one-time-pad encrypts K with that
hop's QKD key, ``c = K xor k_hop``, and the next node decrypts it. Every hop spends one fresh unit
per 256 bits of K, which is never used again (the store marks it spent in the same transaction,
with the relayed key_ID in its note: the consumption is accounted per link). The messages travel
in the KM-to-KM envelope, signed with ML-DSA-65 and replay-checked, so each hop is authenticated.

The last node stores K for the slave SAEs, where ETSI 014 ``dec_keys`` finds it as for a direct
key; the first node hands K to the master only after the last one has stored it, so a key is never
held by the master alone. A relay that fails half-way wastes the units it spent, never reuses them.

One message carries many keys, in groups that each name their master, slaves and size::

    {"type": KMMessage.RELAY, "link_id", "route", "hop",
     "groups": [{"master", "slaves", "size", "keys": [{"key_ID", "units", "c"}, ...]}, ...]}

so that the origin can put concurrent requests for the same target, of any SAE pairs, in one
message: one signature, one transaction and one round trip per hop for all of them. A node
applies a message whole or not at all.

Pure logic on the key store with the clock passed in; the server sends the messages.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from qnet.keys.events import KMMessage
from qnet.keys.store import (
    _IDS,
    ASSIGNED,
    AVAILABLE,
    NEW,
    SPENT,
    DeliveredKey,
    InsufficientKeyError,
    KeyStore,
    SpentAs,
    StoreError,
)
from qnet.keys.store import keys_table as keys

__all__ = ["RELAY_PREFIX", "RelayHop", "RelayRequest", "consumed", "discard_incoming", "forward", "start"]

RELAY_PREFIX = "relay:"
"""``link_id`` of a relayed key stored at the last node: ``relay:<first node>``."""


@dataclass(frozen=True)
class RelayHop:
    """What a node does with a relay message: pass ``body`` to ``next_node``, or (``next_node`` None)
    it stored the keys here."""

    next_node: str | None
    body: dict[str, Any]
    key_ids: list[str]


@dataclass(frozen=True)
class RelayRequest:
    """One enc_keys request a relay carries: ``number`` keys of ``size_bits`` for ``master`` and
    ``slaves``. Several ride in one message (one signature and one round trip per hop for all)."""

    master: str
    slaves: tuple[str, ...]
    number: int
    size_bits: int

    def units(self, unit_bits: int) -> int:
        """Units each hop spends on this request."""
        return self.number * math.ceil(self.size_bits / unit_bits)


def start(store: KeyStore, link_id: str, *, route: Sequence[str], requests: Sequence[RelayRequest],
          unit_bits: int, now_s: float) -> tuple[list[list[DeliveredKey]], RelayHop]:
    """At the first node: spend the requests' units of the first hop's link (owned here) and build
    one message for the second node; each request's keys go to its master once the last node
    confirms. The message holds one group per (master, slaves, size): keys of different SAE pairs
    keep their own owners at the last node.

    Returns:
        The keys of each request, in order, and the message.

    Raises:
        InsufficientKeyError: if the first hop's pool is short for all of them together; nothing changes.
    """
    with store.transaction() as conn:
        units = iter(_take_own(store, conn, link_id, sum(r.units(unit_bits) for r in requests), now_s))
        groups: dict[tuple[str, tuple[str, ...], int], dict[str, Any]] = {}
        delivered, spends = [], []
        for req in requests:
            group = groups.setdefault((req.master, req.slaves, req.size_bits), {
                "master": req.master, "slaves": list(req.slaves), "size": req.size_bits, "keys": []})
            per_key = math.ceil(req.size_bits / unit_bits)
            mine = []
            for _ in range(req.number):
                part = [next(units) for _ in range(per_key)]
                key_id = str(uuid.uuid4())
                mine.append(DeliveredKey(key_id, b"".join(m for _, m in part)[:req.size_bits // 8]))
                group["keys"].append({"key_ID": key_id, "units": [u for u, _ in part]})
                spends.append(([u for u, _ in part], f"relay {key_id} hop 1 {'-'.join(route)}"))
            delivered.append(mine)
        _spend_noted(conn, spends)
    body = {"type": KMMessage.RELAY, "link_id": link_id, "route": list(route), "hop": 1,
            "groups": list(groups.values())}
    return delivered, RelayHop(route[1], body, [k.key_ID for keys_ in delivered for k in keys_])


def forward(store: KeyStore, conn: Connection, sender: str, body: dict[str, Any], *,
            out_link: str | None, unit_bits: int, now_s: float) -> RelayHop:
    """At a later node, inside the caller's transaction (the one that records the message's nonce):
    decrypt every group's keys with the incoming hop's units; store them for their slaves if this
    is the last node, else encrypt them with the outgoing hop's units (``out_link``, owned here) for
    the next node. All or nothing: one bad key refuses the whole message.

    Raises:
        StoreError: if the message does not fit this node (route, units unknown or already spent).
        InsufficientKeyError: if the outgoing hop's pool is short.
    """
    route, hop = list(body["route"]), int(body["hop"])
    if not 1 <= hop < len(route) or route[hop - 1] != sender or route[hop] != store.kme_id:
        raise StoreError(f"relay message out of its route: hop {hop} of {route} from {sender}")
    opened = _open_groups(conn, body, sender, hop, unit_bits)
    key_ids = [k for _, plain in opened for k, _ in plain]
    if len(set(key_ids)) != len(key_ids):
        raise StoreError("relay message names a key_ID twice")
    if hop == len(route) - 1:
        for group, plain in opened:
            _store_for_slaves(store, conn, route, group, plain, now_s)
        return RelayHop(None, body, key_ids)
    if out_link is None:
        raise StoreError(f"no link from {store.kme_id} to {route[hop + 1]}")
    need = sum(len(plain) * math.ceil(int(group["size"]) / unit_bits) for group, plain in opened)
    groups = _seal_groups(conn, iter(_take_own(store, conn, out_link, need, now_s)), opened, hop + 1, unit_bits)
    return RelayHop(route[hop + 1], {**body, "link_id": out_link, "hop": hop + 1, "groups": groups}, key_ids)


def discard_incoming(conn: Connection, sender: str, body: dict[str, Any]) -> int:
    """After a failed hop: spend the incoming units the sender already spent, so that both ends of
    the link account the same consumption (a relay that fails wastes its units at both ends)."""
    entries = [e for g in _listed(body.get("groups")) if isinstance(g, dict) for e in _listed(g.get("keys"))]
    ids = [u for entry in entries if isinstance(entry, dict) for u in _listed(entry.get("units"))]
    if not ids or not isinstance(body.get("link_id"), str):
        return 0
    done = conn.execute(keys.update().where(
        keys.c.key_ID.in_(_IDS), keys.c.link_id == body["link_id"], keys.c.owner == sender,
        keys.c.state.in_([NEW, AVAILABLE])).values(state=SPENT, material=None, note="relay failed further on",
                                                   spent_as=SpentAs.RELAY.value),
        {"ids": [str(u) for u in ids]})
    return int(done.rowcount)


def consumed(store: KeyStore, link_id: str) -> int:
    """Units of ``link_id`` this node spent on relays (accounting)."""
    with store.reading() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(keys).where(
            keys.c.link_id == link_id, keys.c.state == SPENT, keys.c.spent_as == SpentAs.RELAY.value)).scalar_one())


def _take_own(store: KeyStore, conn: Connection, link_id: str, need: int, now_s: float) -> list[tuple[str, bytes]]:
    units = store.servable(conn, link_id, need, now_s)
    if len(units) < need:
        counts = {"link_id": link_id, "available_units": str(len(units)), "needed_units": str(need)}
        raise InsufficientKeyError(f"not enough key on link {link_id} to relay: {need} units needed, {len(units)} "
                                   "available", need, len(units), [counts])
    return units


_SPEND_NOTED = keys.update().where(keys.c.key_ID == sa.bindparam("unit")).values(
    state=SPENT, material=None, pending=None, note=sa.bindparam("why"), spent_as=SpentAs.RELAY.value)


def _spend_noted(conn: Connection, spends: Sequence[tuple[Sequence[str], str]]) -> None:
    """Within the caller's transaction: mark units spent and erase them, each key's units with its
    own note (``relay KEY_ID hop N``: the link's accounting). ``KeyStore.spend`` takes one note for
    all; a message of many keys pays one statement here instead of one per key."""
    rows = [{"unit": unit, "why": note} for ids, note in spends for unit in ids]
    if rows:
        conn.execute(_SPEND_NOTED, rows)


def _open_groups(conn: Connection, body: dict[str, Any], sender: str, hop: int,
                 unit_bits: int) -> list[tuple[dict[str, Any], list[tuple[str, bytes]]]]:
    """Every group of an incoming message with its keys decrypted by the incoming hop's units, which
    are spent here: [(group, [(key_ID, K)])].

    Raises:
        StoreError: if a size is invalid, or a unit is named twice, for another key size, or is not
            the sender's unused unit of the message's link.
    """
    groups, spends = list(body["groups"]), []
    for group in groups:
        size = int(group["size"])
        if size <= 0 or size % 8:
            raise StoreError(f"relay message with a key size of {size} bits")
        per_key = math.ceil(size / unit_bits)
        for entry in group["keys"]:
            if len(entry["units"]) != per_key:
                raise StoreError(f"relay message names {len(entry['units'])} unit(s) for a key of {per_key}")
            spends.append((list(entry["units"]), f"relay {entry['key_ID']} hop {hop}"))
    material = _incoming_units(conn, str(body["link_id"]), sender, [u for ids, _ in spends for u in ids])
    _spend_noted(conn, spends)

    def plain(entry: dict[str, Any]) -> tuple[str, bytes]:
        pad = b"".join(material[u] for u in entry["units"])
        return str(entry["key_ID"]), _xor(base64.b64decode(entry["c"]) if "c" in entry else bytes(len(pad)), pad)

    return [(group, [plain(entry) for entry in group["keys"]]) for group in groups]


def _incoming_units(conn: Connection, link_id: str, owner: str, ids: list[str]) -> dict[str, bytes]:
    """The material of the sender's unused units ``ids`` on ``link_id``.

    Raises:
        StoreError: naming the first unit named twice, unknown here, or not usable.
    """
    if len(set(ids)) != len(ids):
        raise StoreError("relay message names a unit twice")
    cols = (keys.c.key_ID, keys.c.material, keys.c.state, keys.c.owner, keys.c.link_id)
    rows = {r.key_ID: r for start in range(0, len(ids), 500)
            for r in conn.execute(sa.select(*cols).where(keys.c.key_ID.in_(_IDS)), {"ids": ids[start:start + 500]})}
    for unit in ids:
        row = rows.get(unit)
        if row is None or row.link_id != link_id or row.owner != owner or row.state not in (NEW, AVAILABLE):
            why = "unknown here" if row is None else f"link {row.link_id}, owner {row.owner}, state {row.state}"
            raise StoreError(f"relay unit {unit} cannot be used: {why}", [{"key_ID": unit, "reason": why}])
    return {unit: rows[unit].material for unit in ids}


def _seal_groups(conn: Connection, units: Iterator[tuple[str, bytes]],
                 opened: list[tuple[dict[str, Any], list[tuple[str, bytes]]]], hop: int,
                 unit_bits: int) -> list[dict[str, Any]]:
    """The groups for the next node: each key one-time-pad encrypted with fresh ``units`` of the
    outgoing link, which are spent here with the key's note."""
    groups, spends = [], []
    for group, plain in opened:
        per_key, entries = math.ceil(int(group["size"]) / unit_bits), []
        for key_id, secret in plain:
            part = [next(units) for _ in range(per_key)]
            spends.append(([u for u, _ in part], f"relay {key_id} hop {hop}"))
            entries.append({"key_ID": key_id, "units": [u for u, _ in part],
                            "c": base64.b64encode(_xor(secret, b"".join(m for _, m in part))).decode()})
        groups.append({**group, "keys": entries})
    _spend_noted(conn, spends)
    return groups


def _store_for_slaves(store: KeyStore, conn: Connection, route: list[str], group: dict[str, Any],
                      plain: list[tuple[str, bytes]], now_s: float) -> None:
    slaves = json.dumps(sorted(set(group["slaves"])))
    conn.execute(keys.insert(), [
        {"key_ID": key_id, "link_id": RELAY_PREFIX + route[0], "seq": 0, "owner": route[0], "state": ASSIGNED,
         "material": secret, "group_id": key_id, "part": 0, "size_bits": int(group["size"]),
         "master_sae": group["master"], "slaves": slaves, "pending": slaves, "created_s": now_s,
         "expires_s": now_s + store.lifetime_s, "note": f"relayed over {'-'.join(route)}"}
        for key_id, secret in plain])


def _listed(value: Any) -> list[Any]:
    """``value`` if it is a list, else empty (a malformed message names no units)."""
    return value if isinstance(value, list) else []


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise StoreError(f"relay ciphertext of {len(a)} bytes for a pad of {len(b)}")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
