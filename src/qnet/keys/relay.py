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

Pure logic on the key store with the clock passed in; the server sends the messages.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from qnet.keys.store import _IDS, ASSIGNED, AVAILABLE, NEW, SPENT, DeliveredKey, KeyStore, NotEnoughKey, StoreError
from qnet.keys.store import keys_table as keys

__all__ = ["RELAY_PREFIX", "RelayHop", "consumed", "discard_incoming", "forward", "start"]

RELAY_PREFIX = "relay:"
"""``link_id`` of a relayed key stored at the last node: ``relay:<first node>``."""


@dataclass(frozen=True)
class RelayHop:
    """What a node does with a relay message: pass ``body`` to ``next_node``, or (``next_node`` None)
    it stored the keys here."""

    next_node: str | None
    body: dict[str, Any]
    key_ids: list[str]


def start(store: KeyStore, link_id: str, *, route: Sequence[str], master: str, slaves: Sequence[str],
          number: int, size_bits: int, unit_bits: int, now_s: float) -> tuple[list[DeliveredKey], RelayHop]:
    """At the first node: spend ``number`` keys' units of the first hop's link (owned here) and
    build the message for the second node. The keys go to the master once the last node confirms.

    Raises:
        NotEnoughKey: if the first hop's pool is short; nothing changes.
    """
    per_key = math.ceil(size_bits / unit_bits)
    with store.transaction() as conn:
        units = _take_own(store, conn, link_id, number * per_key, now_s)
        delivered, entries = [], []
        for i in range(number):
            part = units[i * per_key:(i + 1) * per_key]
            key_id = str(uuid.uuid4())
            material = b"".join(m for _, m in part)
            delivered.append(DeliveredKey(key_id, material[:size_bits // 8]))
            entries.append({"key_ID": key_id, "units": [u for u, _ in part]})
            KeyStore.spend(conn, [u for u, _ in part], f"relay {key_id} hop 1 {'-'.join(route)}")
    body = {"type": "relay", "link_id": link_id, "route": list(route), "hop": 1, "master": master,
            "slaves": list(slaves), "size": size_bits, "keys": entries}
    return delivered, RelayHop(route[1], body, [d.key_ID for d in delivered])


def forward(store: KeyStore, conn: Connection, sender: str, body: dict[str, Any], *,
            out_link: str | None, unit_bits: int, now_s: float) -> RelayHop:
    """At a later node, inside the caller's transaction (the one that records the message's nonce):
    decrypt K with the incoming hop's units; store it for the slaves if this is the last node, else
    encrypt it with the outgoing hop's units (``out_link``, owned here) for the next node.

    Raises:
        StoreError: if the message does not fit this node (route, units unknown or already spent).
        NotEnoughKey: if the outgoing hop's pool is short.
    """
    route, hop = list(body["route"]), int(body["hop"])
    if not 1 <= hop < len(route) or route[hop - 1] != sender or route[hop] != store.kme_id:
        raise StoreError(f"relay message out of its route: hop {hop} of {route} from {sender}")
    per_key = math.ceil(int(body["size"]) / unit_bits)
    plain = []
    for entry in body["keys"]:
        pad = _spend_named(store, conn, body["link_id"], sender, entry["units"], per_key,
                           f"relay {entry['key_ID']} hop {hop}")
        cipher = base64.b64decode(entry["c"]) if "c" in entry else bytes(len(pad))
        plain.append((entry["key_ID"], _xor(cipher, pad)))
    if hop == len(route) - 1:
        _store_for_slaves(store, conn, route[0], body, plain, now_s)
        return RelayHop(None, body, [k for k, _ in plain])
    if out_link is None:
        raise StoreError(f"no link from {store.kme_id} to {route[hop + 1]}")
    units = _take_own(store, conn, out_link, len(plain) * per_key, now_s)
    entries = []
    for i, (key_id, secret) in enumerate(plain):
        part = units[i * per_key:(i + 1) * per_key]
        KeyStore.spend(conn, [u for u, _ in part], f"relay {key_id} hop {hop + 1}")
        pad = b"".join(m for _, m in part)
        entries.append({"key_ID": key_id, "units": [u for u, _ in part],
                        "c": base64.b64encode(_xor(secret, pad)).decode()})
    out = {**body, "link_id": out_link, "hop": hop + 1, "keys": entries}
    return RelayHop(route[hop + 1], out, [k for k, _ in plain])


def discard_incoming(conn: Connection, sender: str, body: dict[str, Any]) -> int:
    """After a failed hop: spend the incoming units the sender already spent, so that both ends of
    the link account the same consumption (a relay that fails wastes its units at both ends)."""
    ids = [u for entry in body.get("keys", []) if isinstance(entry, dict) for u in entry.get("units", [])]
    if not ids or not isinstance(body.get("link_id"), str):
        return 0
    done = conn.execute(keys.update().where(
        keys.c.key_ID.in_(_IDS), keys.c.link_id == body["link_id"], keys.c.owner == sender,
        keys.c.state.in_([NEW, AVAILABLE])).values(state=SPENT, material=None, note="relay failed further on"),
        {"ids": [str(u) for u in ids]})
    return int(done.rowcount)


def consumed(store: KeyStore, link_id: str) -> int:
    """Units of ``link_id`` this node spent on relays (accounting)."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(keys).where(
            keys.c.link_id == link_id, keys.c.state == SPENT, keys.c.note.like("relay %"))).scalar_one())


def _take_own(store: KeyStore, conn: Connection, link_id: str, need: int, now_s: float) -> list[tuple[str, bytes]]:
    units = store.servable(conn, link_id, need, now_s)
    if len(units) < need:
        raise NotEnoughKey(f"not enough key on link {link_id} to relay: {need} units needed, {len(units)} available",
                           [{"link_id": link_id, "available_units": str(len(units)), "needed_units": str(need)}])
    return units


def _spend_named(store: KeyStore, conn: Connection, link_id: str, owner: str, ids: Sequence[str], per_key: int,
                 note: str) -> bytes:
    """The material of the sender's units ``ids`` on ``link_id``, spent here."""
    if len(ids) != per_key:
        raise StoreError(f"relay message names {len(ids)} unit(s) for a key of {per_key}")
    rows = {r.key_ID: r for r in conn.execute(sa.select(keys.c.key_ID, keys.c.material, keys.c.state, keys.c.owner,
                                                        keys.c.link_id).where(keys.c.key_ID.in_(_IDS)),
                                              {"ids": list(ids)})}
    for unit in ids:
        row = rows.get(unit)
        if row is None or row.link_id != link_id or row.owner != owner or row.state not in (NEW, AVAILABLE):
            why = "unknown here" if row is None else f"link {row.link_id}, owner {row.owner}, state {row.state}"
            raise StoreError(f"relay unit {unit} cannot be used: {why}", [{"key_ID": unit, "reason": why}])
    KeyStore.spend(conn, list(ids), note)
    return b"".join(rows[u].material for u in ids)


def _store_for_slaves(store: KeyStore, conn: Connection, origin: str, body: dict[str, Any],
                      plain: list[tuple[str, bytes]], now_s: float) -> None:
    slaves = json.dumps(sorted(set(body["slaves"])))
    conn.execute(keys.insert(), [
        {"key_ID": key_id, "link_id": RELAY_PREFIX + origin, "seq": 0, "owner": origin, "state": ASSIGNED,
         "material": secret, "group_id": key_id, "part": 0, "size_bits": int(body["size"]),
         "master_sae": body["master"], "slaves": slaves, "pending": slaves, "created_s": now_s,
         "expires_s": now_s + store.lifetime_s, "note": f"relayed over {'-'.join(body['route'])}"}
        for key_id, secret in plain])


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise StoreError(f"relay ciphertext of {len(a)} bytes for a pad of {len(b)}")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
