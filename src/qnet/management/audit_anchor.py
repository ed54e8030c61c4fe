"""Anchors of an audit log's head, so that a truncated log is found (issue 18.5).

A hash chain (:mod:`qnet.management.audit`) shows a record changed, removed from the middle or
reordered, but not the last records removed, nor the file emptied: what is left is a shorter chain,
intact. So the KME **anchors** its chain's head: about once a second while records are being
written, and when it stops, it signs ``{kme, seq, head, time_s}`` (``seq`` = records so far, ``head``
= the last record's hash) with its ML-DSA-65 key (FIPS 204, the key that signs its KM-to-KM
messages), keeps the anchor in its key store (``audit/anchor``) and sends it to every peer KME,
which checks the signature and keeps the newest one in its own store (``audit-anchor/KME``).

A log is then **truncated** if it holds fewer than ``seq`` records of the newest valid anchor, and
**rewritten** if its record ``seq - 1`` does not have the anchored hash. A restarted KME whose log
is behind its own anchor refuses to start (it would continue a truncated chain), and
``qnet audit verify`` on a deployment reads the anchors from the KME's store and its peers'.

What it cannot find: records written after the newest anchor (at most about a second's, while
the KME runs; none after a clean stop), or a log and every copy of its anchor rewritten together
by someone holding the KME's signing key and every peer's store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from qnet.keys.store import KeyStore
from qnet.management.audit import AuditError, AuditLog, canonical, read_rows

__all__ = ["ANCHOR_META", "ANCHOR_PERIOD_S", "PEER_ANCHOR_META", "Anchor", "Anchoring", "anchored_problem",
           "keep_peer_anchor", "valid_anchors"]

ANCHOR_META = "audit/anchor"
"""Where a KME keeps its own newest anchor (its store's meta)."""
PEER_ANCHOR_META = "audit-anchor/"
"""Where a KME keeps each peer's newest anchor: ``audit-anchor/PEER``."""
ANCHOR_PERIOD_S = 1.0
"""How often a KME anchors its head while records are being written."""


@dataclass(frozen=True)
class Anchor:
    """A signed statement of an audit log's head: ``seq`` records, the last with hash ``head``."""

    kme: str
    seq: int
    head: str
    time_s: float
    sig: str = ""

    def signed_bytes(self) -> bytes:
        return canonical({"kme": self.kme, "seq": self.seq, "head": self.head, "time_s": self.time_s})

    def as_dict(self) -> dict[str, Any]:
        return {"kme": self.kme, "seq": self.seq, "head": self.head, "time_s": self.time_s, "sig": self.sig}

    @classmethod
    def parse(cls, value: Any) -> Anchor | None:
        """An anchor from its dict or JSON text; None if it is not one."""
        try:
            raw = json.loads(value) if isinstance(value, str) else value
            anchor = cls(str(raw["kme"]), int(raw["seq"]), str(raw["head"]), float(raw["time_s"]), str(raw["sig"]))
        except (ValueError, TypeError, KeyError):
            return None
        return anchor if anchor.seq >= 0 else None

    def valid(self, key: mldsa.MLDSA65PublicKey) -> bool:
        """Whether ``key`` signed it."""
        try:
            key.verify(base64.b64decode(self.sig, validate=True), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True


class Anchoring:
    """A KME's anchoring of its own audit log.

    Args:
        log: the log (already opened: its ``seq`` and ``head`` are the chain's).
        kme_id: this KME.
        store: its key store.
        key: its ML-DSA-65 signing key.

    Raises:
        AuditError: if the log holds fewer records than the store's anchor says it had (truncated),
            its record at the anchor is not the anchored one (rewritten), or the store holds an anchor
            that is not this KME's signed one (the store was tampered with).
    """

    def __init__(self, log: AuditLog, kme_id: str, store: KeyStore, key: mldsa.MLDSA65PrivateKey) -> None:
        self.log, self.kme_id, self.store, self.key = log, kme_id, store, key
        stored = store.get_meta(ANCHOR_META)
        mine = Anchor.parse(stored)
        if stored is not None and (mine is None or mine.kme != kme_id or not mine.valid(key.public_key())):
            raise AuditError(f"{store.url}: the audit anchor kept in this KME's store is not one it signed "
                             f"(tampered with?); the KME will not start on it")
        if mine is not None and (problem := anchored_problem(log.path, [mine])):
            raise AuditError(f"{log.path}: {problem}; the KME will not continue a truncated or rewritten chain: "
                             f"restore the log from a backup (its peers keep the anchor, so qnet audit verify "
                             f"will go on showing the loss)")
        self.last = mine

    def anchor(self, now_s: float) -> Anchor | None:
        """Sign and keep the head if it moved since the last anchor; the new anchor, or None."""
        seq, head = self.log.position()
        if self.last is not None and self.last.seq == seq and self.last.head == head:
            return None
        unsigned = Anchor(self.kme_id, seq, head, now_s)
        sig = base64.b64encode(self.key.sign(unsigned.signed_bytes())).decode()
        anchor = Anchor(self.kme_id, seq, head, now_s, sig)
        self.store.set_meta(ANCHOR_META, json.dumps(anchor.as_dict()))
        self.last = anchor
        return anchor


def keep_peer_anchor(store: KeyStore, sender: str, value: Any, key: mldsa.MLDSA65PublicKey) -> dict[str, Any]:
    """At a peer: keep ``sender``'s anchor if ``key`` signed it and it is not older than the one
    kept (a KME's chain only grows); returns the reply body.

    Raises:
        AuditError: for an anchor that is malformed, of another KME, or wrongly signed.
    """
    anchor = Anchor.parse(value)
    if anchor is None or anchor.kme != sender or not anchor.valid(key):
        raise AuditError(f"an audit anchor from {sender!r} that is malformed or not signed by it")
    kept = Anchor.parse(store.get_meta(PEER_ANCHOR_META + sender))
    if kept is not None and kept.seq > anchor.seq:
        return {"ok": False, "kept_seq": kept.seq}  # an older (or rolled-back) head: the newer one stays
    store.set_meta(PEER_ANCHOR_META + sender, json.dumps(anchor.as_dict()))
    return {"ok": True, "kept_seq": anchor.seq}


def anchored_problem(path: Path, anchors: Iterable[Anchor]) -> str:
    """Why the log at ``path`` does not reach the newest of ``anchors`` (already checked as signed),
    or '' if it does (or there is none)."""
    newest = max(anchors, key=lambda a: (a.seq, a.time_s), default=None)
    if newest is None or newest.seq == 0:
        return ""
    try:
        rows = read_rows(path)
    except AuditError:
        rows = []
    if len(rows) < newest.seq:
        return (f"truncated: the anchor signed by {newest.kme} says {newest.seq} record(s), the log holds "
                f"{len(rows)}")
    if rows[newest.seq - 1].get("hash") != newest.head:
        return f"rewritten: record {newest.seq} is not the one the anchor signed by {newest.kme} names"
    return ""


def valid_anchors(values: Mapping[str, Any], kme: str, key: mldsa.MLDSA65PublicKey) -> list[tuple[str, Anchor]]:
    """(where, anchor) for each of ``values`` (where -> stored value) that is ``kme``'s and signed by it."""
    out = []
    for where, value in values.items():
        anchor = Anchor.parse(value)
        if anchor is not None and anchor.kme == kme and anchor.valid(key):
            out.append((where, anchor))
    return out
